"""The defaults of the embedded synthetic dataset's model and training run, in one place.

`python -m elastic train`, the app's Train form and the shipped demo
(`scripts/make_demo_checkpoint.py`) all start from these: the CLI from `SYNTHETIC_TRAIN`, the
form and the demo from `APP_TRAIN`, the same run as the app trains it. Torch-free, so the app's
first screen can read them without importing torch.
"""

# The embedded dataset (`elastic.data.SyntheticConfig` takes its defaults from here; the
# reasons are in docs/data.md and docs/decisions.md, "Do the experts drive the predictions?").
SYNTHETIC_DATA = {
    "num_users": 1000,
    "num_items": 2000,  # 8 interests × 8 facets × ~31 items: a facet outlasts a user's draws
    "planted_interests": 8,  # G
    "facets": 8,  # F sub-genres per interest; a user prefers one in each held interest
    "interests_per_user": 3,  # m held interests, visited in rotation
    "session_len": 4,  # items per session; 2·4 = 8 = the local window: the next one is beyond
    "taste": 0.6,  # share of a session's items from the user's facet: the last few items hint
    # at the facet, the whole history tells it
    "min_seq_len": 50,
    "max_seq_len": 100,
    "popularity_skew": 1.0,
    "seed": 0,
    "archetypes": 32,  # taste communities of ~31 users sharing interests, order and tastes
}

# Tuned on the default synthetic dataset (docs/training.md). Other data usually wants a longer
# max_len and more epochs.
SYNTHETIC_MODEL = {
    "max_len": 50,  # the synthetic histories hold 50..100 items
    "d_model": 64,
    "num_layers": 2,
    "num_heads": 2,
    "dropout": 0.2,
    "num_interests": 8,  # k
    "num_slots": 256,  # K = 16²; 64 slots collapsed onto one top slot in our runs
}
SYNTHETIC_TRAIN = {
    "epochs": 20,  # on the 8-facet data both models still improved at epoch 15 (2026-12-02)
    "batch_size": 128,
    "lr": 1e-2,  # 1,000 users are 8 steps per epoch: at 2e-3 ELASTIC stalled at the uniform
    # loss (ln 1000) for 4 epochs and early stopping ended it there (test NDCG@10 0.005)
    "patience": 4,  # the first epochs sit on that plateau: 3 stopped runs before they left it
    "num_threads": 1,  # these tensors are small: 2 threads were 6× slower on a busy 2-core CPU
}

# The Train form's defaults, which the shipped demo was trained with
# (scripts/make_demo_checkpoint.py, which records the seconds each model took in demo.json):
# SYNTHETIC_TRAIN with its seed on the form and without `num_threads`: torch's thread count is
# process-wide, and the app trains two models at once in one process, each of whose trainers
# would set it and give it back under the other.
APP_TRAIN = {k: v for k, v in SYNTHETIC_TRAIN.items() if k != "num_threads"} | {"seed": 0}
