"""The README: its Python example runs as written; its MovieLens-1M table is the results file."""

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_snippets_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has a Python example"
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["logits"].shape == (4, 1001)
    assert namespace["inter"].stage1_weights.shape[-1] == 200


def test_readme_movielens_table_is_the_results_file():
    """The README's MovieLens-1M rows are copied from benchmarks/results/ml1m.json, every
    figure, so a rerun that changes the file and not the README fails here."""
    results = json.loads((README.parent / "benchmarks" / "results" / "ml1m.json").read_text())
    text = README.read_text()
    for name, label in (("popularity", "popularity"), ("sasrec", "SASRec (ours"),
                        ("elastic", "ELASTIC (ours")):
        rows = [line for line in text.splitlines()
                if line.replace("*", "").startswith(f"| {label}")]
        assert len(rows) == 1, f"one README row for {name}, found {rows}"
        cells = [c.strip().strip("*") for c in rows[0].split("|")[2:7]]
        expected = [f"{results[name][key]:.4f}" for key in ("HR@10", "NDCG@10", "HR@20",
                                                              "NDCG@20", "MRR")]
        assert cells == expected, f"README {name}: {cells}, results file: {expected}"
