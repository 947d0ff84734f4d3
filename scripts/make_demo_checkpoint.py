"""Build the checkpoint the app ships: ELASTIC and SASRec trained on the default synthetic
dataset with the Train page's defaults, by the library trainer.

    python scripts/make_demo_checkpoint.py            # writes assets/demo/

Writes assets/demo/{elastic,sasrec}/ (model.safetensors + checkpoint.json: the best weights
and their metadata; the optimizer state and last weights are dropped to keep the app small)
and assets/demo/demo.json (dataset settings, metrics, training curves, interest recovery),
which the app's first screen reads without importing torch. Deterministic for a given seed on
the same machine; takes about a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from elastic.app.bundles import MODEL_ORDER
from elastic.app.paths import DEMO_DIR
from elastic.checkpoint import BEST_WEIGHTS, META_FILE
from elastic.data import SyntheticConfig, leave_one_out, load_dataset
from elastic.defaults import APP_TRAIN, SYNTHETIC_MODEL
from elastic.device import describe_device
from elastic.evaluate import interest_recovery
from elastic.models import build_model
from elastic.train import TrainConfig, Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="folder to write")
    parser.add_argument("--epochs", type=int, default=APP_TRAIN["epochs"])
    parser.add_argument("--device", default="cpu", help="cpu keeps the demo reproducible")
    args = parser.parse_args(argv)

    settings = asdict(SyntheticConfig())
    data = load_dataset("synthetic", **settings)
    split = leave_one_out(data)
    train = APP_TRAIN | {"epochs": args.epochs, "device": args.device}
    staging = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    info: dict = {
        "dataset": {"spec": "synthetic", "settings": settings, "fingerprint": data.fingerprint()},
        "dataset_stats": data.stats(),
        "model": SYNTHETIC_MODEL,
        "train": train,
        "metrics": {},
        "history": {},
        "seconds": {},
        "torch": torch.__version__,
    }
    for name in MODEL_ORDER:
        model = build_model(name, num_items=data.num_items, **SYNTHETIC_MODEL)
        trainer = Trainer(model, split, TrainConfig(**train), data=data, data_spec="synthetic")
        trainer.add_callback(
            "on_epoch_end",
            lambda e, name=name: print(
                f"{name} epoch {e.epoch}: loss {e.train_loss:.3f}, "
                f"valid NDCG@10 {(e.valid or {}).get('NDCG@10', float('nan')):.4f}",
                flush=True,
            ),
        )
        started = time.perf_counter()
        result = trainer.fit()
        info["seconds"][name] = round(time.perf_counter() - started, 1)
        info["device"] = describe_device(trainer.device)
        info["metrics"][name] = {"valid": result["valid"], "test": result["test"]}
        info["history"][name] = result["history"]
        folder = staging / name
        trainer.save_checkpoint(folder)
        for file in folder.iterdir():  # ship only what load_model reads, readable by all
            if file.name in (BEST_WEIGHTS, META_FILE):
                file.chmod(0o644)
            else:
                file.unlink()
        if name == "elastic":
            info["interest_recovery"] = interest_recovery(trainer.model, data, split)
        print(f"{name}: test {result['test']} in {info['seconds'][name]} s", flush=True)
    (staging / "demo.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
