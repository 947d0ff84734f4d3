"""Every setting a user can get wrong on the command line gets one sentence, never a traceback.

Each case is an input a user tried (issue #11); docs/data.md lists them with the sentence."""

import pytest

from elastic.cli import main
from elastic.data import SyntheticConfig, make_synthetic

TINY = ["--max-len", "12", "--d-model", "16", "--layers", "1", "--k", "4", "--slots", "16",
        "--batch", "16", "--device", "cpu", "--threads", "1", "--epochs", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    data = make_synthetic(SyntheticConfig(num_users=40, num_items=30, planted_interests=3,
                                          min_seq_len=6, max_seq_len=12, seed=2))
    rows = [(user, item) for user, items in zip(data.user_ids, data.sequences, strict=True)
            for item in items]
    (folder / "tiny.txt").write_text("".join(f"{u} {i}\n" for u, i in rows))
    (folder / "tiny.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    (folder / "three.txt").write_text("".join(f"{u} {i}\n" for u in (1, 2) for i in (1, 2, 3)))
    return folder


def refused(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--max-len", "-5"], ["--max-len", "at least 1", "-5"]),
        (["--d-model", "0"], ["--d-model", "at least"]),
        (["--layers", "0"], ["--layers", "at least 1"]),
        (["--heads", "0"], ["--heads", "at least 1"]),
        (["--threads", "0"], ["--threads", "at least 1"]),
        (["--device", "foo"], ["--device", "'foo'"]),
        (["--k", "0"], ["--k", "at least 1"]),
        (["--slots", "0"], ["--slots", "at least 1"]),
        (["--loss", "sampled", "--negatives", "0"], ["--negatives", "at least 1"]),
        (["--lr", "0"], ["--lr", "greater than 0"]),
        (["--lr", "nan"], ["--lr", "greater than 0"]),
        (["--lr", "fast"], ["--lr", "'fast'"]),
        (["--dropout", "1.5"], ["--dropout", "0 and 1"]),
        (["--batch", "0"], ["--batch", "at least 1"]),
        (["--epochs", "0"], ["--epochs", "at least 1"]),
        (["--patience", "0"], ["--patience", "at least 1"]),
        (["--seed", "-1"], ["--seed", "at least 0"]),
        (["--heads", "3"], ["--d-model", "--heads"]),
        (["--d-model", "15", "--heads", "5"], ["--d-model", "even"]),
        (["--slots", "15"], ["--slots", "perfect square"]),
        (["--k", "32"], ["--k", "--slots"]),
        (["--loss", "bpr"], ["--loss", "'bpr'"]),
        (["--model", "gpt"], ["--model", "'gpt'"]),
        (["--sep", "ab"], ["--sep", "one character"]),
        (["--user-col", "user"], ["--user-col", "only to a table"]),
        (["--bogus"], ["unrecognized", "--bogus"]),
    ],
)
def test_bad_training_settings_are_one_sentence(tmp_path, files, capsys, flags, fragments):
    refused(capsys, ["train", "--data", str(files / "tiny.txt"), "--out", str(tmp_path / "run"),
                     *TINY, *flags], *fragments)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_table_without_column_flags_names_the_flags_and_the_columns(tmp_path, files, capsys):
    refused(capsys, ["train", "--data", str(files / "tiny.csv"), "--out", str(tmp_path / "run")],
            "--user-col", "--item-col", "['user', 'item']")
    refused(capsys, ["data", "stats", str(files / "tiny.csv")], "--user-col", "['user', 'item']")
    refused(capsys, ["data", "stats", str(files / "tiny.csv"), "--user-col", "user",
                     "--item-col", "user"], "both name the column 'user'")


def test_a_dataset_training_cannot_learn_from_is_refused_and_stats_say_so(tmp_path, files, capsys):
    refused(capsys, ["train", "--data", str(files / "three.txt"), "--out", str(tmp_path / "r"),
                     *TINY], "4 or more")
    assert main(["data", "stats", str(files / "three.txt")]) == 0
    captured = capsys.readouterr()
    assert "trainable_users" in captured.out
    assert captured.err.startswith("warning: ") and "4 or more" in captured.err


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["evaluate", "--checkpoint", "no/such/run"], ["no/such/run", "does not exist"]),
        (["evaluate", "--checkpoint", ".", "--batch", "0"], ["--batch", "at least 1"]),
        (["evaluate", "--checkpoint", ".", "--device", "gpu"], ["--device", "'gpu'"]),
        (["data", "stats", "no/such/file.txt"], ["no/such/file.txt", "no such file"]),
        (["data", "stats", "synthetic", "--sep", ";"], ["--sep", "only to a table"]),
    ],
)
def test_bad_evaluate_and_stats_settings_are_one_sentence(capsys, argv, fragments):
    refused(capsys, argv, *fragments)
