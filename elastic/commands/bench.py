"""`python -m elastic bench` — not built yet."""


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="not built yet")
    p.set_defaults(run=lambda args: print("bench: not built yet") or 1)
