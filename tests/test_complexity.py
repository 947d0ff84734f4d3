"""Complexity: analytic FLOPs equal FlopCounterMode's count, ELASTIC's count grows linearly in N
and SASRec's quadratically (counted, not timed), the memory guard refuses what cannot fit, and
the CPU peak-memory method is exact on a known allocation."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from elastic.complexity import (
    ATTENTION_CORE,
    FORMS,
    RECOMPUTED,
    STAGE1_LOGITS,
    GiB,
    MiB,
    Shape,
    bench,
    check_budget,
    check_training_budget,
    cpu_peak_bytes,
    cpu_peak_self_check,
    flops,
    flops_breakdown,
    flops_terms,
    measure,
    measure_side_by_side,
    peak_bytes,
    peak_bytes_terms,
    training_peak_bytes,
    training_state_bytes,
)
from elastic.data import SyntheticConfig, leave_one_out, make_synthetic
from elastic.models import build_model
from elastic.models.elastic import RECOMPUTE_FROM
from elastic.train import TrainConfig, Trainer

# small, but every path taken: N not a multiple of C, w or p (padding), several query levels
SMALL = Shape(
    batch=2,
    seq_len=44,
    d_model=16,
    heads=2,
    interests=4,
    slots=16,
    items=50,
    window=4,
    pool=2,
    chunk=8,
    local_window=4,
)
# ELASTIC's execution paths: one pass; streamed inference (segments of 16, the last one short)
# with recomputing training; no local window
ELASTIC_PATHS = {
    "one pass": {"recompute": False},
    "streamed, recomputed": {"segment": 16, "recompute": True},
    "no local window": {"local_window": 0, "segment": 16, "recompute": False},
}


def replace(s: Shape, **changes) -> Shape:
    return Shape(**{**s.__dict__, **changes})


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared CPU run fastest on one thread; timings are never asserted."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def counted_flops(form: str, mode: str, s: Shape, device: torch.device, context_len=3) -> int:
    torch.manual_seed(0)
    name, settings = s.model_settings(form)
    model = build_model(name, **settings).to(device)
    ids = torch.randint(1, s.items + 1, (s.batch, s.seq_len), device=device)
    with FlopCounterMode(display=False) as counter:
        if mode == "infer":
            model.eval()
            with torch.no_grad():
                model(ids)
        elif form == "elastic":  # fix the random query context so the loss rows are known
            c = torch.full((s.batch,), context_len, device=device)
            model.training_loss(ids, ids, context_len=c).backward()
        else:
            model.training_loss(ids, ids).backward()
    return counter.get_total_flops()


SASREC_FORMS = ("sasrec-materialized", "sasrec-sdpa", "none")
CASES = [pytest.param(form, {}, id=form) for form in SASREC_FORMS] + [
    pytest.param("elastic", path, id=f"elastic {name}") for name, path in ELASTIC_PATHS.items()
]


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize(("form", "changes"), CASES)
def test_analytic_flops_equal_flop_counter(form, changes, mode, device):
    s = replace(SMALL, **changes)
    counted = counted_flops(form, mode, s, device)
    assert counted > 0
    assert flops(form, mode, s, context_len=3) == pytest.approx(counted, rel=1e-3)  # exact


def test_recompute_rule_is_the_models():
    for n in (RECOMPUTE_FROM - 1, RECOMPUTE_FROM):
        model = build_model("elastic", max_len=n)
        assert Shape(batch=1, seq_len=n).recomputes == model.recompute


def test_analytic_flops_equal_flop_counter_when_n_is_below_every_window(device):
    s = Shape(batch=2, seq_len=5, d_model=16, heads=2, interests=4, slots=16, items=50)
    for mode in ("infer", "train"):
        assert flops("elastic", mode, s, 3) == pytest.approx(
            counted_flops("elastic", mode, s, device), rel=1e-3
        )


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_counted_flops_grow_linearly_for_elastic_and_quadratically_for_sasrec(mode, device):
    # d = 16 so that at N = 512..1024 SASRec's N²·d attention outweighs its N·d² layers
    def shape(n):
        return Shape(batch=1, seq_len=n, d_model=16, heads=2, interests=4, slots=16, items=50)

    def growth(form):  # 512 -> 1024: both sides on the same (one-pass) training path
        return counted_flops(form, mode, shape(1024), device, 128) / counted_flops(
            form, mode, shape(512), device, 64
        )

    assert growth("elastic") == pytest.approx(2.0, abs=0.1)
    assert growth("sasrec-materialized") > 3.3
    # and the formulas agree at a realistic size: ×4 per doubling once N ≫ d
    big = [Shape(batch=32, seq_len=n) for n in (8192, 16384)]
    assert flops("elastic", mode, big[1]) / flops("elastic", mode, big[0]) == pytest.approx(2, 0.03)
    assert flops("sasrec-sdpa", mode, big[1]) / flops("sasrec-sdpa", mode, big[0]) > 3.8


def test_guard_refuses_an_impossible_point_with_a_reason():
    s = Shape(batch=32, seq_len=65536)
    reason = check_budget("sasrec-materialized", "train", s, torch.device("cpu"))
    assert reason is not None
    assert "sasrec-materialized" in reason and "N=65536" in reason and "GiB" in reason
    assert check_budget("elastic", "infer", Shape(batch=2, seq_len=64), torch.device("cpu")) is None


def test_bench_skips_what_the_guard_refuses_without_running_it():
    records = bench(
        ["sasrec-materialized", "elastic"],
        [65536],
        batch=32,
        mode="train",
        device="cpu",
        budget_bytes=GiB,
    )
    assert [r["impl"] for r in records] == ["sasrec-materialized", "elastic"]
    for r in records:
        assert "N=65536" in r["skipped"] and r["median_ms"] is None and r["flops"] > 0


def test_cpu_peak_method_is_exact_on_a_known_allocation():
    measured, true = cpu_peak_self_check(64)
    assert true <= measured <= true + MiB


def test_cpu_peak_sees_tensors_alive_together_not_their_sum_over_time():
    def together():
        a, b = torch.ones(4 * MiB // 4), torch.ones(4 * MiB // 4)  # 8 MiB at once
        return a, b

    def in_turn():
        for _ in range(4):
            torch.ones(4 * MiB // 4)  # 4 MiB, freed before the next

    assert 8 * MiB <= cpu_peak_bytes(together) <= 9 * MiB
    assert 4 * MiB <= cpu_peak_bytes(in_turn) <= 5 * MiB


def test_measure_reports_median_time_and_peak_memory(device):
    def call():
        torch.ones(16 * MiB // 4, device=device).sum()

    m = measure(call, device, repeats=3, warmup=1)
    assert len(m.times_ms) == 3 and m.median_ms > 0
    assert 16 * MiB <= m.peak_bytes <= 18 * MiB


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize(
    ("form", "changes"),
    [
        *(pytest.param(form, {}, id=form) for form in FORMS),
        pytest.param("elastic", {"segment": 64, "recompute": True}, id="elastic streamed"),
        pytest.param("sasrec-sdpa", {"padded": True}, id="sasrec-sdpa padded"),
    ],
)
def test_predicted_peak_is_an_upper_bound_within_a_factor_of_two(form, changes, mode):
    s = Shape(batch=4, seq_len=256, **changes)
    name, settings = s.model_settings(form)
    model = build_model(name, **settings).train(mode == "train")
    ids = torch.randint(1, s.items + 1, (s.batch, s.seq_len))
    if s.padded:
        ids[0, : s.seq_len // 2] = 0

    def call():
        if mode == "infer":
            with torch.no_grad():
                model(ids)
        else:
            model.training_loss(ids, ids).backward()
            model.zero_grad(set_to_none=True)

    call()
    measured = cpu_peak_bytes(call)
    assert measured <= peak_bytes(form, mode, s) <= 2 * measured


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


@pytest.mark.parametrize("name, form", [("elastic", "elastic"), ("sasrec", "sasrec-sdpa")])
def test_training_memory_counts_every_copy_the_trainer_holds(name, form):
    data = make_synthetic(SyntheticConfig(num_users=40, num_items=300, planted_interests=3,
                                          min_seq_len=6, max_seq_len=12))
    model = build_model(name, num_items=data.num_items, max_len=12, d_model=32, num_layers=1,
                        num_interests=4, num_slots=16)
    trainer = Trainer(model, leave_one_out(data), TrainConfig(epochs=1, batch_size=16,
                                                               device="cpu"))
    trainer.fit()
    held = sum(_tensor_bytes(p) + _tensor_bytes(p.grad) for p in model.parameters())
    held += _tensor_bytes(trainer.optimizer.state_dict()["state"])  # Adam's two moments
    held += _tensor_bytes(trainer.best_state) + _tensor_bytes(trainer._epoch_end_state)
    s = Shape.from_config(model.config, batch=16)
    assert 0.9 * held < training_state_bytes(form, s) < 1.3 * held
    assert training_peak_bytes(form, s) > training_state_bytes(form, s)


def test_training_guard_refuses_a_batch_that_cannot_fit():
    s = Shape(batch=100_000, seq_len=50, items=25_000)
    cpu = torch.device("cpu")
    reason = check_training_budget("elastic", s, cpu, budget_bytes=8 * GiB)
    assert reason is not None and "batch 100000" in reason and "8.0 GiB" in reason
    small = Shape(batch=128, seq_len=50, items=25_000)
    assert check_training_budget("elastic", small, cpu, budget_bytes=8 * GiB) is None


def test_side_by_side_measurement_alternates_the_forms_round_by_round():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    results = measure_side_by_side(calls, torch.device("cpu"), repeats=3, warmup=1)
    warmups, rounds, peaks = order[:3], order[3:12], order[12:]
    assert warmups == ["a", "b", "c"] and peaks == ["a", "b", "c"]
    assert rounds == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each form first once
    assert all(len(m.times_ms) == 3 and m.median_cpu_ms >= 0 for m in results.values())


def test_the_attention_free_floor_has_no_attention_and_the_rest_of_the_model():
    s = Shape(batch=2, seq_len=32)
    floor, sasrec = (build_model(name, **settings) for name, settings in
                     (s.model_settings("none"), s.model_settings("sasrec-sdpa")))
    assert all(block.attn is None for block in floor.blocks)
    missing = {n for n, _ in sasrec.named_parameters()} - {n for n, _ in floor.named_parameters()}
    assert missing and all(".attn." in name or ".norm1." in name for name in missing)
    assert flops("none", "train", s) < flops("sasrec-sdpa", "train", s)


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize(("form", "changes"), CASES)
def test_the_terms_the_lab_lists_sum_to_the_plotted_value(form, changes, mode):
    for s in (replace(SMALL, **changes), replace(SMALL, seq_len=1024, **changes)):
        terms = flops_terms(form, mode, s, context_len=3)
        assert sum(terms.values()) == pytest.approx(flops(form, mode, s, context_len=3), rel=1e-12)
        assert sum(flops_breakdown(form, mode, s, 3).values()) == pytest.approx(
            sum(terms.values()), rel=1e-12
        )
        assert all(value > 0 for value in terms.values())
        memory = peak_bytes_terms(form, mode, s)
        assert sum(memory.values()) == pytest.approx(peak_bytes(form, mode, s), rel=1e-12)


def test_each_term_grows_as_its_formula_says():
    def terms(form, n, mode="infer"):
        return flops_terms(form, mode, Shape(batch=4, seq_len=n))

    for form in ("sasrec-sdpa", "sasrec-materialized"):
        assert terms(form, 4096)[ATTENTION_CORE] == 4 * terms(form, 2048)[ATTENTION_CORE]
    assert terms("elastic", 4096)[STAGE1_LOGITS] == 2 * terms("elastic", 2048)[STAGE1_LOGITS]
    assert ATTENTION_CORE not in terms("elastic", 4096)
    # training recomputes long histories' forward in backward, short ones not (Shape.recomputes)
    assert RECOMPUTED in terms("elastic", RECOMPUTE_FROM, "train")
    assert RECOMPUTED not in terms("elastic", RECOMPUTE_FROM // 2, "train")
