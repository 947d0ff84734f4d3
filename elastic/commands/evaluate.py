"""`python -m elastic evaluate` — not built yet."""


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="not built yet")
    p.set_defaults(run=lambda args: print("evaluate: not built yet") or 1)
