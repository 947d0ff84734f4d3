"""The shared loss: chunked full softmax equals plain cross-entropy, gradients included."""

import torch
import torch.nn.functional as F

from elastic.models.common import full_softmax_loss, sampled_softmax_loss


def test_chunked_full_softmax_equals_plain_cross_entropy_with_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(21, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 21, (37,))  # some 0 = no target
    got = full_softmax_loss(hidden, weight, targets, chunk_rows=5)
    keep = targets != 0
    logits = hidden[keep] @ weight.T
    logits[:, 0] = float("-inf")
    want = F.cross_entropy(logits, targets[keep])
    torch.testing.assert_close(got, want.float(), rtol=1e-6, atol=1e-6)
    g1 = torch.autograd.grad(got, (hidden, weight))
    g2 = torch.autograd.grad(want, (hidden, weight))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sampled_softmax_is_finite_and_positive_and_masks_accidental_hits():
    torch.manual_seed(0)
    hidden = torch.randn(10, 4)
    weight = torch.randn(6, 4)
    targets = torch.randint(1, 6, (10,))
    loss = sampled_softmax_loss(hidden, weight, targets, num_negatives=50)
    assert torch.isfinite(loss) and loss > 0
    # with a catalogue of one item every negative is an accidental hit: the loss is exactly 0
    one = sampled_softmax_loss(hidden, weight[:2], torch.ones(10, dtype=torch.long), 8)
    assert one.item() == 0.0
