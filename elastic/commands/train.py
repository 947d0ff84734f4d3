"""`python -m elastic train` — not built yet."""


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="not built yet")
    p.set_defaults(run=lambda args: print("train: not built yet") or 1)
