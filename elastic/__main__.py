import sys

from elastic.openmp import cap_spinning

cap_spinning()  # before elastic.cli imports torch

from elastic.cli import main  # noqa: E402

sys.exit(main())
