"""SASRec baseline: both attention forms agree, are causal, and ignore left padding."""

import pytest
import torch

from elastic.models import SASRecConfig, SASRecModel, build_model


def _model(attention: str) -> SASRecModel:
    torch.manual_seed(0)
    cfg = SASRecConfig(num_items=40, max_len=16, d_model=16, num_heads=2, dropout=0.0,
                       attention=attention)
    return SASRecModel(cfg).double().eval()


def test_materialized_and_sdpa_forms_are_the_same_function():
    a, b = _model("materialized"), _model("sdpa")
    b.load_state_dict(a.state_dict())
    ids = torch.randint(1, 41, (3, 16))
    torch.testing.assert_close(a.encode(ids), b.encode(ids))  # no padding: is_causal path
    ids[0, :5] = 0
    torch.testing.assert_close(a.encode(ids)[ids != 0], b.encode(ids)[ids != 0])


@pytest.mark.parametrize("attention", ["materialized", "sdpa"])
def test_causal_position_t_ignores_later_items(attention):
    model = _model(attention)
    ids = torch.randint(1, 41, (2, 16))
    changed = ids.clone()
    changed[:, 9:] = torch.randint(1, 41, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model.encode(ids)[:, :9], model.encode(changed)[:, :9])
        assert not torch.allclose(model.encode(ids)[:, 9:], model.encode(changed)[:, 9:])


@pytest.mark.parametrize("attention", ["materialized", "sdpa"])
def test_more_left_padding_changes_nothing(attention):
    model = _model(attention)
    seq = torch.tensor([[4, 8, 15, 16, 23, 42 - 2]])
    with torch.no_grad():
        short = model(torch.nn.functional.pad(seq, (2, 0)))
        long = model(torch.nn.functional.pad(seq, (10, 0)))
    torch.testing.assert_close(short[:, 1:], long[:, 1:])


def test_build_model_shares_settings_and_rejects_unknown_ones():
    m = build_model("sasrec", num_items=10, max_len=8, num_interests=4)  # ELASTIC key ignored
    assert isinstance(m, SASRecModel) and m.config.max_len == 8
    with pytest.raises(ValueError, match="unknown model settings"):
        build_model("elastic", num_items=10, colour="red")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("bert4rec", num_items=10)
