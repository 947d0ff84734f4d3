"""Live training curves."""

from __future__ import annotations

from elastic.viz.training import training_figure

HISTORY = [
    {"epoch": 1, "train_loss": 6.0, "valid": {"NDCG@10": 0.05}},
    {"epoch": 2, "train_loss": 5.0, "valid": None},
    {"epoch": 3, "train_loss": 4.5, "valid": {"NDCG@10": 0.2}},
]


def test_each_model_gets_batch_epoch_and_metric_curves():
    fig = training_figure(
        {"elastic": HISTORY, "sasrec": HISTORY[:1]},
        {"elastic": [(0.5, 6.5), (1.0, 6.0)], "sasrec": []},
        max_epochs=10,
    )
    names = [trace.name for trace in fig.data]
    assert names == ["ELASTIC (batches)", "ELASTIC", "ELASTIC", "SASRec", "SASRec"]
    epoch_loss = fig.data[1]
    assert list(epoch_loss.y) == [6.0, 5.0, 4.5]
    metric = fig.data[2]
    assert list(metric.x) == [1, 3] and list(metric.y) == [0.05, 0.2]  # epochs with validation
    assert tuple(fig.layout.xaxis.range) == (0, 10.2)
    assert tuple(fig.layout.xaxis2.range) == (0, 10.2)


def test_an_empty_run_draws_empty_curves():
    fig = training_figure({"elastic": []})
    assert all(len(trace.x or []) == 0 for trace in fig.data)


def test_long_runs_are_thinned_but_keep_the_last_batch():
    losses = [(i / 10, float(i)) for i in range(1, 1001)]
    fig = training_figure({"elastic": HISTORY}, {"elastic": losses}, max_batch_points=100)
    batches = fig.data[0]
    assert len(batches.x) == 100
    assert batches.y[-1] == 1000.0
