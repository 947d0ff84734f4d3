"""The defaults of the embedded synthetic dataset's model and training run, in one place.

`python -m elastic train`, the app's Train form and the shipped demo
(`scripts/make_demo_checkpoint.py`) all start from these. Torch-free, so the app's first
screen can read them without importing torch.
"""

# Tuned on the default synthetic dataset (docs/training.md): ELASTIC trains in ~31 s on a
# 2-core CPU to 43× the popularity baseline's test HR@10. Other data usually wants a longer
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
    "epochs": 15,  # ELASTIC's validation NDCG@10 flattens after 8-12 epochs at this rate
    "batch_size": 128,
    "lr": 1e-2,  # 1,000 users are 8 steps per epoch: at 2e-3 ELASTIC stalled at the uniform
    # loss (ln 1000) for 4 epochs and early stopping ended it there (test NDCG@10 0.005)
    "patience": 4,  # the first epochs sit on that plateau: 3 stopped runs before they left it
    "num_threads": 1,  # these tensors are small: 2 threads were 6× slower on a busy 2-core CPU
}
