"""benchmarks/results/cpu-targets/README.md from the JSON files `cpu_targets.sh` writes.

    python benchmarks/cpu_targets_table.py   # (cpu_targets.sh calls it at the end)

One table per run (idle / busy × infer / train): median wall ms with process CPU ms in
brackets, and the ratios issue 8 sets targets for.
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "results" / "cpu-targets"
FORMS = ("elastic", "sasrec-sdpa", "sasrec-materialized", "none")


def _cell(record: dict | None) -> str:
    if record is None or record.get("median_ms") is None:
        return "skipped"
    return f"{record['median_ms']:.0f} ({record['median_cpu_ms']:.0f})"


def _ratio(a: dict | None, b: dict | None, key: str = "median_ms", percent=False) -> str:
    if not a or not b or a.get(key) is None or b.get(key) is None:
        return "–"
    value = a[key] / b[key]
    return f"{value:.1%}" if percent else f"{value:.2f}×"


def table(run: dict) -> list[str]:
    m = run["machine"]
    lines = [
        f"{run['date']}, {m['cpu']}, torch {m['torch']}, {m['threads']} threads, load average "
        f"{m['load_avg']} at the start.",
        "",
        "| N | ELASTIC | SASRec SDPA | SASRec materialized | no attention (floor) | SDPA ÷ "
        "ELASTIC | ELASTIC ÷ floor | ELASTIC MiB ÷ materialized |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_n: dict[int, dict[str, dict]] = {}
    for record in run["records"]:
        by_n.setdefault(record["N"], {})[record["impl"]] = record
    for n, forms in sorted(by_n.items()):
        e, sdpa, mat, none = (forms.get(f) for f in FORMS)
        lines.append(
            f"| {n} | {_cell(e)} | {_cell(sdpa)} | {_cell(mat)} | {_cell(none)} | "
            f"{_ratio(sdpa, e)} | {_ratio(e, none)} | "
            f"{_ratio(e, mat, 'peak_mib', percent=True)} |"
        )
    return lines


def main() -> int:
    out = [
        "# Issue 8's CPU targets: measured",
        "",
        "`bash benchmarks/cpu_targets.sh`: `python -m elastic bench`, d 64, 2 layers, 2 heads, "
        "k 8, K 256, 1,000 items, B 32, 2 threads, 5 timed calls per form in alternating order "
        "(median wall ms, process CPU ms in brackets). *idle*: nothing else running; *busy*: two "
        "`python3 -c 'while True: pass'` beside it. Targets (issue 8): N = 1024 infer ≥ 2.5× "
        "SDPA idle and ≥ 1.0× busy, memory ≤ 10 % of materialized; N = 1024 train ≥ 1.5× SDPA "
        "idle, ≥ 1.0× busy; N = 4096 ≥ 3× SDPA and within 1.3× of the floor.",
    ]
    for load in ("idle", "busy"):
        for mode in ("infer", "train"):
            path = FOLDER / f"{load}-{mode}.json"
            if path.is_file():
                out += ["", f"## {load}, {mode}", "", *table(json.loads(path.read_text()))]
    (FOLDER / "README.md").write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
