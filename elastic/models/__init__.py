"""The two sequential recommenders and one way to build either by name."""

from __future__ import annotations

from dataclasses import fields

from elastic.models.common import PAD, SequentialRecommender
from elastic.models.elastic import (
    ElasticConfig,
    ElasticIntermediates,
    ElasticModel,
    Intervention,
    memory_usage,
)
from elastic.models.sasrec import SASRecConfig, SASRecModel

MODEL_CONFIGS = {"elastic": ElasticConfig, "sasrec": SASRecConfig}
MODELS = {"elastic": ElasticModel, "sasrec": SASRecModel}


def build_model(name: str, **config) -> SequentialRecommender:
    """build_model("elastic", num_items=..., max_len=...) -> model. Unknown keys are an error;
    keys that belong to the other model (e.g. `num_interests` for SASRec) are ignored, so the
    CLI and the app can pass one set of hyper-parameters to both."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    known = {f.name for cls in MODEL_CONFIGS.values() for f in fields(cls)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown model settings: {sorted(unknown)}")
    own = {f.name for f in fields(MODEL_CONFIGS[name])}
    cfg = MODEL_CONFIGS[name](**{k: v for k, v in config.items() if k in own})
    return MODELS[name](cfg)


__all__ = [
    "MODELS",
    "MODEL_CONFIGS",
    "PAD",
    "ElasticConfig",
    "ElasticIntermediates",
    "ElasticModel",
    "Intervention",
    "SASRecConfig",
    "SASRecModel",
    "SequentialRecommender",
    "build_model",
    "memory_usage",
]
