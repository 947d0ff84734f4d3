"""Data pipeline: datasets as `InteractionData`, the leave-one-out split, and batches.

    data = load_dataset("synthetic")  # or a MovieLens folder/.zip, .txt, .csv, .parquet
    split = leave_one_out(data)
    train = TrainLoader(split.train, max_len=50, batch_size=128, seed=0)
    valid = EvalLoader(split, "valid", max_len=50)
"""

from elastic.data.interactions import (
    MIN_SEQUENCE_LENGTH,
    DataError,
    DataWarning,
    InteractionData,
)
from elastic.data.loaders import (
    TABLE_SEPARATORS,
    TABLE_SUFFIXES,
    load_dataset,
    load_movielens,
    load_sasrec_txt,
    load_table,
    table_columns,
)
from elastic.data.split import (
    EvalLoader,
    LeaveOneOut,
    ProgressLoader,
    TrainLoader,
    leave_one_out,
    pad_left,
)
from elastic.data.synthetic import (
    SyntheticConfig,
    SyntheticTruth,
    interest_agreement,
    make_synthetic,
)

__all__ = [
    "MIN_SEQUENCE_LENGTH",
    "TABLE_SEPARATORS",
    "TABLE_SUFFIXES",
    "DataError",
    "DataWarning",
    "EvalLoader",
    "InteractionData",
    "LeaveOneOut",
    "ProgressLoader",
    "SyntheticConfig",
    "SyntheticTruth",
    "TrainLoader",
    "interest_agreement",
    "leave_one_out",
    "load_dataset",
    "load_movielens",
    "load_sasrec_txt",
    "load_table",
    "make_synthetic",
    "pad_left",
    "table_columns",
]
