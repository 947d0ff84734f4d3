"""Cost curves with fixed log-log axes and the crossover."""

from __future__ import annotations

import numpy as np
import pytest

from elastic.complexity import Shape, flops, flops_terms, peak_bytes, peak_bytes_terms
from elastic.viz.complexity import (
    breakdown_text,
    cost_figure,
    find_crossover,
    format_quantity,
    log_ticks,
    n_grid,
)

NS = [16, 64, 256, 1024, 4096]


def _curves():
    ns = np.array(NS, dtype=float)
    return {
        "sasrec-materialized": {"flops": ns**2, "bytes": ns**2},
        "sasrec-sdpa": {"flops": ns**2, "bytes": 10 * ns},
        "elastic": {"flops": 100 * ns, "bytes": 20 * ns},
    }


def test_n_grid_is_log_spaced_and_inclusive():
    grid = n_grid(16, 1024, per_octave=2)
    assert grid[0] == 16 and grid[-1] == 1024
    assert len(grid) == 13
    assert np.all(np.diff(grid) > 0)


def test_crossover_is_interpolated_in_log_log():
    # N² against 100·N: equal at N = 100
    n_star, kind = find_crossover(NS, np.array(NS) ** 2.0, 100.0 * np.array(NS))
    assert kind == "cross"
    assert n_star == pytest.approx(100, rel=1e-6)


def test_crossover_always_and_never():
    assert find_crossover(NS, [2] * 5, [1] * 5) == (16.0, "always")
    assert find_crossover(NS, [1] * 5, [2] * 5) == (None, "never")
    # cheaper in the middle only: not cheaper at the longest N -> never
    assert find_crossover(NS, [1, 3, 3, 1, 1], [2, 2, 2, 2, 2])[1] == "never"


def _both_panels(**changes):
    """The lab's two panels (time and memory) on fixed log axes, the current N at 256."""
    return cost_figure(
        NS,
        _curves(),
        panels=[("flops", "time", "flops"), ("bytes", "memory", "bytes")],
        current_n=256,
        x_range=(10, 10_000),
        y_ranges={"flops": (1e2, 1e8), "bytes": (1e2, 1e8)},
        **changes,
    )


def test_cost_figure_draws_three_forms_per_panel_on_fixed_log_axes():
    fig = _both_panels(crossovers={"flops": (100.0, "cross"), "bytes": (None, "never")})
    names = [t.name for t in fig.data]
    assert names.count("ELASTIC") == 2
    assert names.count("SASRec (materialized N×N)") == 2
    assert names.count("crossover") == 1  # only where there is one
    star = next(t for t in fig.data if t.name == "crossover")
    assert star.x[0] == 100.0
    assert star.y[0] == pytest.approx(100.0**2, rel=1e-6)  # on the SDPA curve
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert tuple(fig.layout.xaxis.range) == (1.0, 4.0)
    assert tuple(fig.layout.yaxis.range) == (2.0, 8.0)
    assert fig.layout.shapes[0].x0 == 256  # the current N


def test_cost_figure_leaves_refused_points_as_gaps():
    curves = _curves()
    curves["sasrec-materialized"]["bytes"] = [1.0, 2.0, 0.0, 0.0, 0.0]  # not measured
    fig = cost_figure(
        NS,
        curves,
        panels=[("bytes", "memory", "bytes")],
        current_n=64,
        x_range=(10, 10_000),
        y_ranges={"bytes": (1, 1e8)},
    )
    y = next(t for t in fig.data if t.name == "SASRec (materialized N×N)").y
    assert np.isnan(y[2:]).all()


def test_the_frame_does_not_move_when_the_curves_do():
    def frame(scale):
        curves = _curves()
        curves["elastic"]["flops"] = scale * np.array(NS, dtype=float)
        fig = cost_figure(
            NS,
            curves,
            panels=[("flops", "t", "flops")],
            current_n=64,
            x_range=(10, 1e4),
            y_ranges={"flops": (1, 1e9)},
        )
        return fig.layout.yaxis.range, next(t for t in fig.data if t.name == "ELASTIC").y

    (r1, y1), (r2, y2) = frame(100), frame(1000)
    assert tuple(r1) == tuple(r2)
    assert list(y1) != list(y2)


def test_the_crossover_star_sits_on_the_baseline_across_gaps():
    curves = _curves()
    curves["sasrec-sdpa"]["flops"] = [16.0**2, 0.0, 256.0**2, 1024.0**2, 4096.0**2]  # 64: gap
    fig = cost_figure(
        NS,
        curves,
        panels=[("flops", "t", "flops")],
        current_n=64,
        x_range=(10, 1e4),
        y_ranges={"flops": (1, 1e9)},
        crossovers={"flops": (100.0, "cross")},
    )
    star = next(t for t in fig.data if t.name == "crossover")
    assert np.isfinite(star.y[0])
    assert star.y[0] == pytest.approx(100.0**2, rel=1e-6)


def test_memory_ticks_use_binary_units_and_flop_ticks_one_si_format():
    values, text = log_ticks(1e3, 1e15, "bytes")
    assert text[:3] == ["1 KiB", "32 KiB", "1 MiB"]  # never "10B": it reads as ten bytes
    assert all(v == 2 ** round(np.log2(v)) for v in values)
    assert "1 TiB" in text
    values, text = log_ticks(1e2, 1e17, "flops")
    assert text == ["1 k", "1 M", "1 G", "1 T", "1 P"]  # no stray 10¹⁶ among SI ticks
    assert values == [1e3, 1e6, 1e9, 1e12, 1e15]
    _, text = log_ticks(0.01, 1e4, "ms")
    assert text[0] == "0.01 ms" and text[-1] == "10 s"
    for lo, hi, unit in ((1e3, 1e15, "bytes"), (1e2, 1e17, "flops"), (0.01, 1e4, "ms")):
        assert 2 <= len(log_ticks(lo, hi, unit)[0]) <= 8


def test_quantities_carry_their_units_with_three_significant_digits():
    assert format_quantity(13.3e9, "flops") == "13.3 GFLOPs"
    assert format_quantity(201 * 2**20, "bytes") == "201 MiB"
    assert format_quantity(638.2, "ms") == "638 ms"
    assert format_quantity(1234.0, "ms") == "1.23 s"
    assert format_quantity(512, "bytes") == "512 B"


def test_cost_figure_hovers_and_ticks_say_the_unit():
    fig = _both_panels()
    flops, memory = (t for t in fig.data if t.name == "ELASTIC")
    assert flops.customdata[0] == "1.6 kFLOPs"  # 100 · 16
    assert memory.customdata[0] == "320 B"  # 20 · 16
    assert "%{customdata}" in flops.hovertemplate and "%{y" not in flops.hovertemplate
    assert fig.layout.yaxis2.tickmode == "array"
    assert all(t.endswith(("B", "KiB", "MiB")) for t in fig.layout.yaxis2.ticktext)


def test_a_hover_lists_the_terms_of_the_formula_that_sum_to_the_plotted_value():
    shapes = [Shape(batch=8, seq_len=n) for n in NS]
    curves, breakdowns = {}, {}
    for form in ("sasrec-sdpa", "elastic"):
        curves[form] = {
            "flops": [flops(form, "infer", s) for s in shapes],
            "bytes": [peak_bytes(form, "infer", s) for s in shapes],
        }
        breakdowns[form] = {
            "flops": [flops_terms(form, "infer", s) for s in shapes],
            "bytes": [peak_bytes_terms(form, "infer", s) for s in shapes],
        }
    fig = cost_figure(
        NS, curves, panels=[("flops", "time", "flops"), ("bytes", "memory", "bytes")],
        current_n=256, x_range=(10, 10_000), y_ranges={"flops": (1e2, 1e14), "bytes": (1e2, 1e12)},
        breakdowns=breakdowns,
    )  # fmt: skip
    elastic = next(t for t in fig.data if t.name == "ELASTIC")
    for i, (value, terms) in enumerate(zip(elastic.y, breakdowns["elastic"]["flops"], strict=True)):
        assert sum(terms.values()) == pytest.approx(value, rel=1e-12)
        lines = elastic.text[i].split("<br>")
        assert len(lines) == len(terms)
        assert all(any(term in line for line in lines) for term in terms)
    assert "%{text}" in elastic.hovertemplate
    sdpa = next(t for t in fig.data if t.name == "SASRec (SDPA, fused)")
    assert "Q·Kᵀ and weights·V (∝ N²)" in sdpa.text[-1].split("<br>")[0]  # dominant at N = 4096


def test_breakdown_text_is_largest_first_with_shares():
    text = breakdown_text({"a": 1.0, "b": 3.0, "c": 0.001, "zero": 0.0}, "flops")
    assert text.split("<br>") == ["75%  b: 3 FLOPs", "25%  a: 1 FLOPs", "<1%  c: 0.001 FLOPs"]


def test_slope_guides_pass_through_the_last_point_with_slopes_one_and_two():
    fig = _both_panels(guides={"flops": [("elastic", 1), ("sasrec-sdpa", 2)]})
    one, two = (t for t in fig.data if t.name and t.name.startswith("slope"))
    assert (one.x[-1], one.y[-1]) == (4096, 100 * 4096)  # ELASTIC's last point
    assert (two.x[-1], two.y[-1]) == (4096, 4096**2)
    for guide, slope in ((one, 1), (two, 2)):
        steepness = np.diff(np.log(guide.y)) / np.diff(np.log(guide.x))
        np.testing.assert_allclose(steepness, slope)
        assert guide.x[0] == 10  # from the left edge of the frame
    assert "∝ N²" in two.text[1] and "∝ N " in one.text[1]
