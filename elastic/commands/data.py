"""`python -m elastic data` — not built yet."""


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="not built yet")
    p.set_defaults(run=lambda args: print("data: not built yet") or 1)
