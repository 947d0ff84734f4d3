"""Where the app's files lie."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: elastic/app/paths.py
ASSETS = ROOT / "assets"
DEMO_DIR = ASSETS / "demo"  # written by scripts/make_demo_checkpoint.py
DEMO_INFO = DEMO_DIR / "demo.json"
ARCHITECTURE_SVG = ASSETS / "architecture.svg"
FAVICON = ASSETS / "favicon.svg"
ABLATION_RESULTS = ROOT / "benchmarks" / "results" / "ablation.json"  # benchmarks/ablation.py
RUNS_DIR = ROOT / "runs" / "app"  # where the Train page saves (ignored by git)
