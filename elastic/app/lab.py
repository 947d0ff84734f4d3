"""The Complexity lab's data: its slider grids, the analytic curves of the three forms over N
(each value the sum of its formula's terms, kept for the hover), the fixed axes, and the
measured curves, taken by a `MeasureJob` in a child process.

The figures are built here from plain numbers; `elastic.app_support` caches them per slider
state and the page `app_pages/complexity_lab.py` draws them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field

from elastic.app.paths import ROOT

LAB_N = [2**i for i in range(4, 17)]  # 16 .. 65,536
LAB_K = [1, 2, 4, 8, 16, 32, 64, 128]
LAB_SLOTS = [16, 64, 256, 1024, 4096, 16384, 65536]
LAB_D = [32, 64, 128, 256, 512]
LAB_LAYERS = [1, 2, 3, 4, 6, 8]
LAB_BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256]
LAB_FORMS = ("sasrec-materialized", "sasrec-sdpa", "elastic")


@dataclass(frozen=True)
class LabSettings:
    """The lab's sliders except N (the curves run over N)."""

    mode: str  # "infer" or "train"
    interests: int  # k
    slots: int  # K
    d_model: int
    layers: int
    batch: int

    def shape(self, seq_len: int):
        from elastic.complexity import Shape

        return Shape(
            batch=self.batch,
            seq_len=seq_len,
            d_model=self.d_model,
            layers=self.layers,
            interests=self.interests,
            slots=self.slots,
        )


# ----------------------------------------------------------------------------------------------
# Analytic curves
# ----------------------------------------------------------------------------------------------


def analytic_point(settings: LabSettings, seq_len: int) -> dict[str, dict]:
    """Each form's FLOPs and predicted peak bytes at N = seq_len, each the sum of its formula's
    terms, which are kept too ("flops terms", "bytes terms") for the lab's hover."""
    from elastic.complexity import flops_terms, peak_bytes_terms

    shape = settings.shape(seq_len)
    costs = {}
    for form in LAB_FORMS:
        flop_terms = flops_terms(form, settings.mode, shape)
        byte_terms = peak_bytes_terms(form, settings.mode, shape)
        costs[form] = {
            "flops": sum(flop_terms.values()),
            "bytes": sum(byte_terms.values()),
            "flops terms": flop_terms,
            "bytes terms": byte_terms,
        }
    return costs


def analytic_sweep(settings: LabSettings) -> dict:
    """FLOPs and predicted peak bytes of the three forms over N, their terms point by point,
    and the crossovers with SDPA."""
    from elastic.viz.complexity import find_crossover, n_grid

    ns = n_grid(LAB_N[0], LAB_N[-1], per_octave=2)
    points = [analytic_point(settings, int(n)) for n in ns]
    curves = {
        form: {q: [p[form][q] for p in points] for q in ("flops", "bytes")} for form in LAB_FORMS
    }
    terms = {
        form: {q: [p[form][f"{q} terms"] for p in points] for q in ("flops", "bytes")}
        for form in LAB_FORMS
    }
    crossovers = {
        q: find_crossover(ns, curves["sasrec-sdpa"][q], curves["elastic"][q])
        for q in ("flops", "bytes")
    }
    return {"ns": ns.tolist(), "curves": curves, "terms": terms, "crossovers": crossovers}


def lab_frame() -> dict:
    """Axis ranges that hold every curve any slider setting can draw, rounded to decades, so
    the frame never moves while the sliders do."""
    smallest = LabSettings("infer", LAB_K[0], LAB_SLOTS[0], LAB_D[0], LAB_LAYERS[0], LAB_BATCH[0])
    largest = LabSettings(
        "train", LAB_K[-1], LAB_SLOTS[-1], LAB_D[-1], LAB_LAYERS[-1], LAB_BATCH[-1]
    )
    low, high = analytic_point(smallest, LAB_N[0]), analytic_point(largest, LAB_N[-1])
    y_ranges = {}
    for q in ("flops", "bytes"):
        lo = min(v[q] for v in low.values())
        hi = max(v[q] for v in high.values())
        y_ranges[q] = (10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi)))
    return {"x_range": (LAB_N[0] / 1.3, LAB_N[-1] * 1.3), "y_ranges": y_ranges}


def analytic_figure(sweep: dict, frame: dict, seq_len: int):
    """The lab's analytic figure: the curves of `analytic_sweep` in the axes of `lab_frame`,
    with the picked N dotted."""
    from elastic.viz.complexity import cost_figure

    return cost_figure(
        sweep["ns"],
        sweep["curves"],
        panels=[
            ("flops", "time: FLOPs of one call", "flops"),
            ("bytes", "memory: predicted peak", "bytes"),
        ],
        current_n=seq_len,
        x_range=frame["x_range"],
        y_ranges=frame["y_ranges"],
        crossovers=sweep["crossovers"],
        breakdowns=sweep["terms"],
        # N·k against N²: SASRec's cost bends to slope 2 (its memory too when the N × N scores
        # are materialized), ELASTIC's stays at slope 1
        guides={
            "flops": [("elastic", 1), ("sasrec-sdpa", 2)],
            "bytes": [("elastic", 1), ("sasrec-materialized", 2)],
        },
    )


# ----------------------------------------------------------------------------------------------
# Measured curves
# ----------------------------------------------------------------------------------------------

MEASURE_MAX_POINT_S = 20.0  # a point predicted to take longer is skipped, with the reason
_measure_slot = threading.Lock()  # one measurement at a time per process


def measurement_grid(device_type: str) -> list[int]:
    """N values to measure: up to 4k on a CPU (minutes, not hours), 16k on a GPU."""
    top = 16384 if device_type == "cuda" else 4096
    return [n for n in LAB_N if 64 <= n <= top]


@dataclass
class MeasureJob:
    """One sweep of measured points for one lab setting; shared by every session (the numbers
    belong to the device, not to a user). Written by its thread under `lock`."""

    settings: LabSettings
    ns: list[int]
    device: str
    status: str = "queued"  # queued | measuring | done | cancelled | failed
    records: list[dict] = field(default_factory=list)
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def total(self) -> int:
        return len(self.ns) * len(LAB_FORMS)

    def snapshot(self) -> tuple[str, list[dict], str | None]:
        with self.lock:
            return self.status, [dict(r) for r in self.records], self.error

    def run(self) -> None:
        """Measure in a child process (`python -m elastic bench --jsonl`), reading its records
        line by line. The child runs the CPU memory profiler in its own main thread, so
        nothing of the profiler (its USDT and thread warnings) reaches the server's console, a
        measurement that runs out of memory takes only the child down, and Stop ends the child
        at once."""
        with _measure_slot:  # one measurement at a time: they would disturb each other
            if self.cancel.is_set():
                self._finish("cancelled")
                return
            self._finish("measuring")
            s = self.settings
            command = [
                sys.executable, "-m", "elastic", "bench", "--jsonl",
                "--impl", ",".join(LAB_FORMS), "--n", ",".join(str(n) for n in self.ns),
                "--k", str(s.interests), "--slots", str(s.slots), "--batch", str(s.batch),
                "--d-model", str(s.d_model), "--layers", str(s.layers), "--mode", s.mode,
                "--device", self.device, "--repeats", "3", "--warmup", "1",
                "--max-point-s", str(MEASURE_MAX_POINT_S),
            ]  # fmt: skip
            with tempfile.TemporaryFile("w+") as errors:
                child = subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True
                )
                watcher = threading.Thread(target=self._stop_on_cancel, args=(child,), daemon=True)
                watcher.start()
                for line in child.stdout:
                    if line.startswith("{"):
                        with self.lock:
                            self.records.append(json.loads(line))
                child.wait()
                if self.cancel.is_set():
                    self._finish("cancelled")
                elif child.returncode != 0:
                    errors.seek(0)
                    said = [ln for ln in errors.read().splitlines() if ln.startswith("error:")]
                    reason = said[-1][len("error:") :].strip() if said else None
                    self._finish(
                        "failed",
                        reason or f"The measurement stopped (exit status {child.returncode}).",
                    )
                else:
                    self._finish("done")

    def _stop_on_cancel(self, child: subprocess.Popen) -> None:
        while child.poll() is None:
            if self.cancel.wait(0.2):
                child.terminate()
                return

    def _finish(self, status: str, error: str | None = None) -> None:
        with self.lock:
            self.status, self.error = status, error


def measured_curves(records: list[dict]) -> tuple[list[int], dict, list[str]]:
    """(ns, curves[form]["ms" | "peak"], skipped reasons) from bench records; an unmeasured
    point is 0, which the figure leaves as a gap."""
    ns = sorted({r["N"] for r in records})
    curves = {form: {"ms": [0.0] * len(ns), "peak": [0.0] * len(ns)} for form in LAB_FORMS}
    skipped = []
    for r in records:
        i = ns.index(r["N"])
        if r.get("skipped"):
            skipped.append(r["skipped"])
            continue
        curves[r["impl"]]["ms"][i] = r["median_ms"]
        curves[r["impl"]]["peak"][i] = max(r["peak_mib"], 0.01) * 2**20
    return ns, curves, skipped


def measured_figure(ns: list[int], curves: dict, current_n: int, x_range: tuple[float, float]):
    """The measured time and peak memory over N (`measured_curves`), with a crossover where
    ELASTIC and SDPA were both measured at two N or more; None when no point was measured.
    The y axes span what was measured, the x axis is the analytic figure's."""
    from elastic.viz.complexity import cost_figure, find_crossover

    crossovers = {}
    for q in ("ms", "peak"):
        a, b = curves["sasrec-sdpa"][q], curves["elastic"][q]
        both = [i for i in range(len(ns)) if a[i] > 0 and b[i] > 0]
        if len(both) >= 2:
            crossovers[q] = find_crossover(
                [ns[i] for i in both], [a[i] for i in both], [b[i] for i in both]
            )
    ms = [v for c in curves.values() for v in c["ms"] if v > 0]
    peak = [v for c in curves.values() for v in c["peak"] if v > 0]
    if not ms:
        return None
    return cost_figure(
        ns,
        curves,
        panels=[
            ("ms", "measured time of one call", "ms"),
            ("peak", "measured peak memory", "bytes"),
        ],
        current_n=current_n,
        x_range=x_range,
        y_ranges={
            "ms": (min(ms) / 2, max(ms) * 2),
            "peak": (min(peak) / 2, max(peak) * 2),
        },
        crossovers=crossovers,
    )
