"""Which data and which model make ELASTIC's experts matter? One configuration per call.

    python benchmarks/experts_search.py --tag base
    python benchmarks/experts_search.py --tag s2m5 --data '{"session_len": 2, \
        "interests_per_user": 5}' --model '{"num_interests": 4}' --models sasrec,elastic

Trains the requested models (the library `Trainer`, the synthetic defaults of
`elastic.defaults` unless overridden) on one synthetic dataset, appends one JSON line to
`benchmarks/results/experts-search.jsonl` and rewrites the table `experts-search.md` from all
lines (`--table` only rewrites the table):

- what the data rewards: SASRec's test HR@10 / NDCG@10, and the same SASRec reading only the
  last `--recent` items (what everything beyond the local window is worth to a model free to
  use it), popularity;
- ELASTIC: as trained and under each intervention of `elastic.ablation` (relative change of
  test NDCG@10), reading only the last items, interest recovery (per-user dispatcher NMI, the
  share of gathering dispatchers whose top-10 items share one planted interest) and memory
  usage over the test users (share of slots used, KL to uniform).

Accuracy, not timing: it may share the machine (the load average is recorded all the same).
`docs/decisions.md` ("Do the experts drive the predictions?") reads these lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ablation import RecentOnly, commit  # noqa: E402
from elastic.ablation import ablation_table  # noqa: E402
from elastic.data import EvalLoader, SyntheticConfig, leave_one_out, load_dataset  # noqa: E402
from elastic.defaults import SYNTHETIC_MODEL, SYNTHETIC_TRAIN  # noqa: E402
from elastic.evaluate import PopularityScorer, evaluate, interest_recovery  # noqa: E402
from elastic.models import build_model, memory_usage  # noqa: E402
from elastic.train import TrainConfig, Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "experts-search.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="a name for this configuration (required to run one)")
    parser.add_argument("--table", action="store_true",
                        help="only rewrite the .md table from the .jsonl lines")
    parser.add_argument("--data", default="{}", help="SyntheticConfig overrides (JSON)")
    parser.add_argument("--model", default="{}", help="model overrides (JSON), both models")
    parser.add_argument("--elastic", default="{}", help="ELASTIC-only overrides (JSON)")
    parser.add_argument("--train", default="{}", help="TrainConfig overrides (JSON)")
    parser.add_argument("--models", default="sasrec,elastic")
    parser.add_argument("--recent", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def train(name: str, data, split, model_kw: dict, train_kw: dict):
    model = build_model(name, num_items=data.num_items, **model_kw)
    trainer = Trainer(model, split, TrainConfig(**train_kw))
    started = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - started
    summary = {
        "test": result["test"], "valid": result["valid"], "seconds": round(seconds, 1),
        "best_epoch": trainer.best_epoch, "epochs": trainer.epochs_done,
    }
    return trainer.model.eval(), summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table or not args.tag:
        lines = [json.loads(t) for t in args.out.read_text().splitlines() if t.strip()]
        args.out.with_suffix(".md").write_text(markdown(lines))
        return 0
    data_kw = json.loads(args.data)
    model_kw = SYNTHETIC_MODEL | json.loads(args.model)
    train_kw = SYNTHETIC_TRAIN | {"device": "cpu"} | json.loads(args.train)
    data = load_dataset("synthetic", **data_kw)
    split = leave_one_out(data)
    loader = EvalLoader(split, "test", model_kw["max_len"], 256)
    line: dict = {
        "tag": args.tag, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(), "load_avg_start": os.getloadavg()[0],
        "data": asdict(SyntheticConfig(**data_kw)), "model": model_kw,
        "elastic_overrides": json.loads(args.elastic), "train": train_kw,
        "popularity": evaluate(PopularityScorer(split), loader),
    }
    for name in args.models.split(","):
        kw = model_kw | (json.loads(args.elastic) if name == "elastic" else {})
        model, summary = train(name, data, split, kw, train_kw)
        summary["config"] = asdict(model.config)  # every setting, the defaults of the day too
        with torch.no_grad():
            summary[f"last_{args.recent}"] = evaluate(RecentOnly(model, args.recent), loader)
        if name == "elastic":
            rows = ablation_table(model, loader)
            summary["ablation"] = {r.name: round(r.change["NDCG@10"], 4) for r in rows}
            summary["recovery"] = interest_recovery(model, data, split)
            with torch.no_grad():
                slots = torch.cat([
                    model(loader.history_ids[i:i + 256], return_intermediates=True)[1].slot_ids
                    for i in range(0, loader.num_users, 256)
                ])
            usage = memory_usage(slots, model.config.num_slots)
            summary["memory"] = {"share_used": usage["share_used"],
                                 "kl_to_uniform": round(usage["kl_to_uniform"], 3)}
        line[name] = summary
        print(name, json.dumps(summary, default=float)[:1500], flush=True)
    line["load_avg_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(line, default=float) + "\n")
    lines = [json.loads(t) for t in args.out.read_text().splitlines() if t.strip()]
    args.out.with_suffix(".md").write_text(markdown(lines))
    print(brief(line))
    return 0


OLD_DEFAULTS = {"num_items": 1000, "facets": 4, "taste": 0.8, "archetypes": 0}  # before 2026-12-02


def markdown(lines: list[dict]) -> str:
    """The search as one table: each configuration's data, model and measured figures."""
    out = [
        "# Which data and model make the experts matter? (benchmarks/experts_search.py)",
        "",
        "Test NDCG@10, full ranking, 1,000 users; Δ = relative change of ELASTIC's NDCG@10 under "
        "each intervention of `elastic.ablation`; *last 8* = the trained model reading only "
        "the last 8 items. Data: the settings that differ from the generator's defaults "
        "before 2026-12-02 (1,000 items, 4 facets, taste 0.8, no archetypes; 8 interests, 3 "
        "per user, sessions of 4, rotation; `revisit random`: a generator option tried here "
        "and removed, the next session's interest drawn among the other held ones). Stage 1: "
        "`cos s` = "
        "`stage1_scale` s, `dot` = scaled dot "
        "products (the default until 2026-12-02), `compete` = an experimental softmax over "
        "dispatchers, since removed; `memory read as content` = an experimental readout adding "
        "Σ gate·value of the retrieved slots to the output, since removed. One seed each, on "
        "the 2-core CPU shared with other work "
        "(load average at the start of each run in the last column).",
        "",
        "| tag | data | ELASTIC | SASRec | SASRec last 8 | ELASTIC NDCG | last 8 | another "
        "user's experts | random slots | one out | dispatchers off | window off | NMI/user "
        "| top-10 one interest | slots used / KL | load |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: | --- | ---: |",
    ]
    for line in lines:
        before = {**asdict(SyntheticConfig()), **OLD_DEFAULTS, "revisit": "rotation"}
        data = {k: v for k, v in line["data"].items() if v != before.get(k)}
        over = line.get("elastic_overrides", {}) | {
            k: v for k, v in line.get("elastic", {}).get("config", {}).items()
            if k in ("stage1_scale", "num_interests")}
        form = ("compete" if over.get("stage1_compete") else
                f"cos {over['stage1_scale']:g}" if over.get("stage1_scale") else "dot")
        form += "".join(f", k {v}" for k, v in over.items() if k == "num_interests" and v != 8)
        form += ", memory read as content" if over.get("memory_readout") else ""
        cells = [line["tag"], ", ".join(f"{k} {v}" for k, v in data.items()) or "—",
                 form if "elastic" in line else "—"]
        sas = line.get("sasrec")
        cells += ([f"{sas['test']['NDCG@10']:.4f}",
                   f"{sas['last_8']['NDCG@10'] / sas['test']['NDCG@10'] - 1:+.1%}"]
                  if sas else ["—", "—"])
        el = line.get("elastic")
        if el:
            a = el["ablation"]
            cells += [f"{el['test']['NDCG@10']:.4f}",
                      f"{el['last_8']['NDCG@10'] / el['test']['NDCG@10'] - 1:+.1%}"]
            cells += [f"{a[k]:+.1%}" for k in ("another user's experts", "random slots",
                                               "one dispatcher out",
                                               "dispatchers off (local window only)",
                                               "local window off")]
            r, m = el["recovery"], el["memory"]
            cells += [f"{r['dispatcher_nmi_per_user']:.2f}", f"{r['top10_one_interest']:.2f}",
                      f"{m['share_used']:.0%} / {m['kl_to_uniform']:.2f}"]
        else:
            cells += ["—"] * 10
        cells.append(f"{line['load_avg_start']:.1f}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def brief(line: dict) -> str:
    """One readable line: NDCG@10 of each model, the long-range share, the ablation."""
    parts = [line["tag"], f"pop {line['popularity']['NDCG@10']:.4f}"]
    for name in ("sasrec", "elastic"):
        if name in line:
            s = line[name]
            full, recent = s["test"]["NDCG@10"], next(v for k, v in s.items()
                                                      if k.startswith("last_"))["NDCG@10"]
            parts.append(f"{name} {full:.4f} ({s['seconds']} s, ep {s['best_epoch']}/"
                         f"{s['epochs']}), last-items {(recent - full) / full:+.1%}")
    if "elastic" in line:
        s = line["elastic"]
        parts.append(" ".join(f"{k.split(' (')[0]}: {v:+.1%}" for k, v in s["ablation"].items()
                              if k != "as trained"))
        r = s["recovery"]
        parts.append(f"NMI/user {r['dispatcher_nmi_per_user']:.2f} top10-one "
                     f"{r['top10_one_interest']:.2f} slots {s['memory']['share_used']:.0%} "
                     f"KL {s['memory']['kl_to_uniform']:.2f}")
    return " | ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
