"""Device and precision choice: bf16 autocast where asked (or where native, for "auto")."""

import os

import pytest
import torch

from elastic.data import SyntheticConfig, leave_one_out, make_synthetic
from elastic.device import autocast_dtype, native_bf16
from elastic.distributed import TrainingStep
from elastic.models import build_model
from elastic.train import TrainConfig, Trainer, seed_everything


def test_precision_names():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cpu, "auto") is (torch.bfloat16 if native_bf16(cpu) else None)
    with pytest.raises(ValueError, match="precision must be"):
        autocast_dtype(cpu, "fp16")
    with pytest.raises(ValueError, match="precision must be"):
        TrainConfig(precision="half")


@pytest.mark.parametrize("name", ["sasrec", "elastic"])
def test_a_bf16_step_computes_in_bf16_and_stays_close_to_float32(name, device):
    torch.manual_seed(0)
    model = build_model(name, num_items=60, max_len=16, d_model=32, num_layers=1,
                        num_interests=4, num_slots=16, dropout=0.0).to(device)
    input_ids = torch.randint(1, 61, (8, 16), device=device)
    target_ids = torch.randint(1, 61, (8, 16), device=device)
    matmul_dtypes = []  # what the first linear layer returns
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    hook = linear.register_forward_hook(lambda module, args, out: matmul_dtypes.append(out.dtype))
    torch.manual_seed(1)
    full = TrainingStep(model)(input_ids, target_ids)
    torch.manual_seed(1)
    half = TrainingStep(model, torch.bfloat16)(input_ids, target_ids)
    hook.remove()
    assert matmul_dtypes[0] == torch.float32 and matmul_dtypes[1] == torch.bfloat16
    assert half.dtype == torch.float32 and half != full  # the loss itself is float32
    torch.testing.assert_close(half, full, rtol=0.02, atol=0.02)
    half.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)


def test_a_bf16_run_learns_and_keeps_float32_weights():
    data = make_synthetic(SyntheticConfig(num_users=120, num_items=60, planted_interests=3,
                                          min_seq_len=10, max_seq_len=20, seed=0))
    seed_everything(0)
    model = build_model("sasrec", num_items=data.num_items, max_len=20, d_model=32,
                        num_layers=1)
    trainer = Trainer(model, leave_one_out(data),
                      TrainConfig(epochs=3, batch_size=32, lr=5e-3, device="cpu",
                                  precision="bf16", patience=None))
    result = trainer.fit()
    assert result["train_loss"][-1] < result["train_loss"][0]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_single_process_entry_points_cap_openmp_spinning_but_not_torchrun_workers():
    """GOMP_SPINCOUNT must be in the environment before torch loads OpenMP: `python -m elastic`
    and app.py call `cap_spinning` first; a torchrun worker, a user's own value, or torch
    already loaded leave it alone (elastic/openmp.py says why)."""
    import subprocess
    import sys

    code = ("from elastic.openmp import cap_spinning; print(cap_spinning()); import os, torch; "
            "print(os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")}

    def run(source, extra=None):
        return subprocess.run([sys.executable, "-c", source], env=env | (extra or {}),
                              capture_output=True, text=True, check=True).stdout.split()

    assert run(code) == ["True", "10000"]
    assert run(code, {"GOMP_SPINCOUNT": "7"}) == ["False", "7"]
    assert run(code, {"LOCAL_RANK": "0"}) == ["False", "None"]  # a torchrun worker
    late = "import torch; " + code
    assert run(late) == ["False", "None"]  # torch came first: too late to matter
    assert run("import elastic, os; print(os.environ.get('GOMP_SPINCOUNT'))") == ["None"]
    main = ("import os, runpy, sys; sys.argv = ['elastic', '--help']\n"
            "try:\n    runpy.run_module('elastic', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print(os.environ.get('GOMP_SPINCOUNT'))")
    assert run(main)[-1] == "10000"  # `python -m elastic` sets it before the CLI loads torch
