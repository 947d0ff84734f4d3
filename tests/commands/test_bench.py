"""`python -m elastic bench`: runs in-process, prints a table, writes valid records."""

import json

import pytest
import torch

from elastic.cli import main

KEYS = {
    "impl",
    "mode",
    "N",
    "k",
    "slots",
    "items",
    "batch",
    "device",
    "median_ms",
    "peak_mib",
    "flops",
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_bench_writes_a_record_with_every_key_per_form(tmp_path, capsys, mode):
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--n",
        "64",
        "--repeats",
        "1",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--mode",
        mode,
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    records = report["records"]
    assert [r["impl"] for r in records] == ["elastic", "sasrec-materialized", "sasrec-sdpa",
                                            "none"]
    for r in records:
        assert set(r) >= KEYS and "skipped" not in r
        assert (r["mode"], r["N"], r["batch"], r["device"]) == (mode, 64, 2, "cpu")
        assert r["median_ms"] > 0 and r["median_cpu_ms"] > 0 and r["peak_mib"] > 0
        assert r["flops"] > 0
    assert report["machine"]["torch"] == torch.__version__
    table = capsys.readouterr().out
    assert "sasrec-materialized" in table and "median ms" in table


def test_bench_refuses_an_unknown_form_with_a_sentence(capsys):
    assert main(["bench", "--impl", "elastic,linformer", "--n", "64"]) == 2
    assert "unknown --impl linformer" in capsys.readouterr().err
