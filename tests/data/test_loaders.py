"""Loaders on tiny fixture files, good and bad. Every error names the file and where in it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elastic.data import (
    DataError,
    DataWarning,
    load_dataset,
    load_movielens,
    load_sasrec_txt,
    load_table,
    table_columns,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_ML1M = REPO_ROOT.parent / "shared" / "data" / "ml-1m"


def sequences(data) -> list[list[int]]:
    return [s.tolist() for s in data.sequences]


def assert_error(error: pytest.ExceptionInfo[DataError], path: Path | str, *where: str) -> None:
    message = str(error.value)
    assert str(path) in message
    for fragment in where:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --------------------------------------------------------------------------- SASRec .txt


def test_sasrec_txt_keeps_file_order_and_sorted_id_mapping(write_file):
    # users interleaved and out of order; item ids sparse; CRLF, tabs and a blank line
    path = write_file("toy.txt", "2 30\r\n1 10\n2 10\n1\t20\n\n2 20\n1 30\n1 40\n")
    data = load_sasrec_txt(path)
    assert data.user_ids == [1, 2]
    assert data.item_ids == [None, 10, 20, 30, 40]
    assert sequences(data) == [[1, 2, 3, 4], [3, 1, 2]]
    assert data.num_items == 4 and data.num_interactions == 7
    assert data.item_titles is None and data.item_label(2) == "item 2"
    assert data.name == "toy" and data.source == str(path)


def test_sasrec_txt_dense_ids_are_kept(write_file):
    path = write_file("dense.txt", "1 3\n1 1\n1 2\n2 2\n2 3\n2 1\n")
    data = load_sasrec_txt(path)
    assert data.item_ids[1:] == [1, 2, 3]
    assert sequences(data) == [[3, 1, 2], [2, 3, 1]]


def test_sasrec_txt_metadata_from_movies_and_item_map(write_file, movies_dat):
    path = write_file("ml/toy.txt", "1 1\n1 2\n1 3\n")
    movies = write_file("meta/movies.dat", movies_dat)
    item_map = write_file("meta/map.txt", "1 10\n2 30\n3 77\n")  # movie 77 is unknown
    with pytest.warns(DataWarning, match="1 items have no title"):
        data = load_sasrec_txt(path, movies=movies, item_map=item_map)
    assert data.item_titles == ["", "Café Stories (1999)", "Paper Moons (2003)", ""]
    assert data.item_genres[1] == "Comedy|Romance"
    assert data.item_label(1) == "Café Stories (1999)"
    assert data.item_label(3) == "item 3"
    assert data.stats()["items_without_title"] == 1


def test_sasrec_txt_attaches_metadata_lying_beside_it(write_file, movies_dat):
    path = write_file("ml/ml-toy.txt", "1 1\n1 2\n1 3\n")
    write_file("ml/movies.dat", movies_dat)
    write_file("ml/sasrec_to_movielens_items.txt", "1 10\n2 20\n3 30\n")
    data = load_sasrec_txt(path)
    assert data.item_titles[1:] == [
        "Café Stories (1999)",
        "Night Train (1987)",
        "Paper Moons (2003)",
    ]


def test_sasrec_txt_movies_without_item_map_is_an_error(write_file, movies_dat):
    path = write_file("toy.txt", "1 1\n1 2\n1 3\n")
    movies = write_file("movies.dat", movies_dat)
    with pytest.raises(DataError, match="need both") as error:
        load_sasrec_txt(path, movies=movies)
    assert_error(error, path)


def test_empty_file(write_file):
    path = write_file("empty.txt", "\n  \n")
    with pytest.raises(DataError, match="empty") as error:
        load_sasrec_txt(path)
    assert_error(error, path)


def test_sasrec_non_numeric_id_names_line_and_column(write_file):
    path = write_file("bad.txt", "1 1\n1 2\n1 x7\n1 4\n")
    with pytest.raises(DataError) as error:
        load_sasrec_txt(path)
    assert_error(error, path, "line 3", "column 2 (item)", "'x7'")
    assert error.value.line == 3


def test_sasrec_missing_column_names_line(write_file):
    path = write_file("short.txt", "1 1\n1 2\n1\n1 4\n")
    with pytest.raises(DataError) as error:
        load_sasrec_txt(path)
    assert_error(error, path, "line 3", "expected 2 fields (user item), found 1")


def test_csv_given_as_sasrec_points_to_load_table(write_file):
    path = write_file("table.txt", "user,item,time\n1,2,3\n")
    with pytest.raises(DataError) as error:
        load_sasrec_txt(path)
    assert_error(error, path, "line 1", "load_table")


def test_ratings_dat_given_as_sasrec_points_to_load_movielens(write_file, ratings_dat):
    path = write_file("ratings.txt", ratings_dat)
    with pytest.raises(DataError) as error:
        load_sasrec_txt(path)
    assert_error(error, path, "line 1", "load_movielens")


def test_sasrec_id_too_large(write_file):
    path = write_file("huge.txt", "1 1\n1 2\n1 12345678901234567890\n")
    with pytest.raises(DataError) as error:
        load_sasrec_txt(path)
    assert_error(error, path, "line 3", "more than 18 digits")


def test_consecutive_duplicates_are_dropped_repeats_kept(write_file):
    path = write_file("dups.txt", "1 1\n1 1\n1 2\n1 1\n1 3\n1 3\n1 3\n")
    with pytest.warns(DataWarning, match="dropped 3 consecutive duplicate"):
        data = load_sasrec_txt(path)
    assert sequences(data) == [[1, 2, 1, 3]]
    assert data.stats()["duplicates_dropped"] == 3


def test_short_users_dropped_with_count(write_file):
    # user 2 has 2 items; user 3 has 3 rows but 2 after duplicate removal
    path = write_file("short.txt", "1 1\n1 2\n1 3\n2 1\n2 2\n3 5\n3 5\n3 6\n")
    with pytest.warns(DataWarning) as caught:
        data = load_sasrec_txt(path)
    assert any("dropped 2 users with fewer than 3" in str(w.message) for w in caught)
    assert data.user_ids == [1]
    assert data.num_items == 3  # item 5 and 6 belonged only to dropped users
    assert data.stats()["short_users_dropped"] == 2


def test_no_user_long_enough_is_an_error(write_file):
    path = write_file("tiny.txt", "1 1\n1 2\n2 1\n")
    with pytest.raises(DataError, match="no user has 3 or more") as error:
        load_sasrec_txt(path)
    assert_error(error, path)


def test_missing_path(tmp_path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(DataError, match="no such file") as error:
        load_sasrec_txt(path)
    assert_error(error, path)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(path)


# --------------------------------------------------------------------------- GroupLens


def test_movielens_folder_sorts_by_time_with_stable_ties(movielens_folder):
    with pytest.warns(DataWarning, match="dropped 1 users"):
        data = load_movielens(movielens_folder)
    assert data.user_ids == [3, 7]
    assert data.item_ids == [None, 10, 20, 30, 40]
    # user 3: 40@100, then the tie at t=200 in file order (30 before 10), then 20@900
    assert sequences(data) == [[4, 3, 1, 2], [1, 3, 2]]
    assert data.item_titles[1] == "Café Stories (1999)"  # decoded as ISO-8859-1
    assert data.item_genres[4] == "Drama|War"
    assert data.name == "ml-tiny"


def test_movielens_zip_equals_folder(movielens_folder, movielens_zip):
    with pytest.warns(DataWarning):
        from_folder = load_movielens(movielens_folder)
    with pytest.warns(DataWarning):
        from_zip = load_dataset(movielens_zip)
    assert from_zip.fingerprint() == from_folder.fingerprint()
    assert from_zip.item_titles == from_folder.item_titles
    assert from_zip.name == "ml-tiny"


def test_load_dataset_dispatches_folder_and_ratings_dat(movielens_folder):
    with pytest.warns(DataWarning):
        by_folder = load_dataset(movielens_folder)
    with pytest.warns(DataWarning):
        by_file = load_dataset(movielens_folder / "ratings.dat")
    assert by_folder.fingerprint() == by_file.fingerprint()


def test_many_timestamp_ties_keep_file_order(write_file, movies_dat):
    # 300 ratings at 3 distinct times, items in a scrambled file order: an unstable sort
    # would reorder the ties
    rng = np.random.default_rng(0)
    items = rng.permutation(np.arange(1, 301))
    times = rng.integers(0, 3, size=300)
    lines = [f"1::{item}::5::{time}" for item, time in zip(items, times, strict=True)]
    folder = write_file("ml/ratings.dat", "\n".join(lines)).parent
    write_file("ml/movies.dat", movies_dat)
    with pytest.warns(DataWarning, match="no title"):
        data = load_movielens(folder)
    expected = np.concatenate([items[times == t] for t in range(3)])  # file order within a time
    assert np.array_equal(np.asarray(data.item_ids)[data.sequences[0]], expected)


def test_movielens_five_core_drops_rare_items(write_file, movies_dat):
    lines = [f"{u}::{i}::5::{10 * u + i}" for u in range(1, 7) for i in (1, 2, 3, 4)]
    lines += ["1::99::5::1000", "2::99::5::1000"]
    folder = write_file("ml/ratings.dat", "\n".join(lines) + "\n").parent
    write_file("ml/movies.dat", movies_dat)
    with pytest.warns(DataWarning, match="no title"):
        full = load_movielens(folder)
    with pytest.warns(DataWarning, match="no title"):
        five_core = load_movielens(folder, five_core=True)
    assert full.num_items == 5 and 99 in full.item_ids
    assert five_core.item_ids == [None, 1, 2, 3, 4]
    assert five_core.num_interactions == 24
    assert five_core.stats()["rare_items_dropped"] == 1
    assert five_core.stats()["rare_item_interactions_dropped"] == 2


def test_ratings_with_comma_separator(write_file, movies_dat):
    write_file("ml/movies.dat", movies_dat)
    path = write_file("ml/ratings.dat", "1::10::5::1\n1,20,5,2\n")
    with pytest.raises(DataError) as error:
        load_movielens(path.parent)
    assert_error(error, path, "line 2", "','", "UserID::MovieID::Rating::Timestamp")


def test_ratings_missing_column(write_file, movies_dat):
    write_file("ml/movies.dat", movies_dat)
    path = write_file("ml/ratings.dat", "1::10::5::1\n1::20::5::2\n1::30::5\n")
    with pytest.raises(DataError) as error:
        load_movielens(path.parent)
    assert_error(error, path, "line 3", "expected 4 fields", "found 3")


def test_ratings_non_numeric_timestamp(write_file, movies_dat):
    write_file("ml/movies.dat", movies_dat)
    path = write_file("ml/ratings.dat", "1::10::5::1\n1::20::5::yesterday\n")
    with pytest.raises(DataError) as error:
        load_movielens(path.parent)
    assert_error(error, path, "line 2", "column 4 (Timestamp)")


def test_movies_dat_bad_line(write_file, movies_dat, ratings_dat):
    write_file("ml/ratings.dat", ratings_dat)
    path = write_file("ml/movies.dat", movies_dat + b"50::No Genres\n")
    with pytest.raises(DataError) as error:
        load_movielens(path.parent)
    assert_error(error, path, "line 5", "expected 3 fields")


def test_folder_without_ratings(write_file):
    folder = write_file("sasrec/ml-1m.txt", "1 1\n").parent
    with pytest.raises(DataError, match=r"no ratings\.dat") as error:
        load_dataset(folder)
    assert_error(error, folder, "SASRec")


def test_zip_without_ratings(tmp_path, movies_dat):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-1m/movies.dat", movies_dat)
    with pytest.raises(DataError, match=r"no ratings\.dat in the zip") as error:
        load_movielens(path)
    assert_error(error, path, "ml-1m/movies.dat")


def test_truncated_zip(movielens_zip):
    content = movielens_zip.read_bytes()
    movielens_zip.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as error:
        load_dataset(movielens_zip)
    assert_error(error, movielens_zip)


def test_corrupt_zip_member(tmp_path, ratings_dat):
    # central directory intact, compressed bytes damaged: the CRC check must catch it
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ratings.dat", ratings_dat)
    content = bytearray(path.read_bytes())
    start = content.index(b"7::20")
    content[start : start + 4] = b"9999"
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match="truncated or corrupt") as error:
        load_movielens(path)
    assert_error(error, path)


# --------------------------------------------------------------------------- tables


CSV_TABLE = (
    "user,item,time,rating\n"
    "bob,pear,2021-01-03,1\n"
    "ann,fig,2021-01-02,1\n"
    "bob,apple,2021-01-01,1\n"
    "ann,kiwi,2021-01-02,1\n"
    "ann,apple,2021-01-01,1\n"
    "bob,fig,2021-01-03,1\n"
)


def test_csv_string_ids_sorted_by_time_stable(write_file):
    data = load_table(write_file("t.csv", CSV_TABLE), "user", "item", "time")
    assert data.user_ids == ["ann", "bob"]
    assert data.item_ids == [None, "apple", "fig", "kiwi", "pear"]
    # ann: apple@01, then the tie fig, kiwi in file order; bob: apple@01, pear, fig (tie)
    assert sequences(data) == [[1, 2, 3], [1, 4, 2]]


def test_csv_without_time_keeps_file_order(write_file):
    data = load_table(write_file("t.csv", CSV_TABLE), "user", "item")
    assert sequences(data) == [[2, 3, 1], [4, 1, 2]]


def test_csv_numeric_ids_and_blank_lines(write_file):
    path = write_file("n.csv", "u,i,t\n2,5,3\n\n2,6,1\n2,7,2\n")
    data = load_table(path, "u", "i", "t")
    assert data.user_ids == [2] and data.item_ids == [None, 5, 6, 7]
    assert sequences(data) == [[2, 3, 1]]


def test_parquet_equals_csv(write_file, tmp_path):
    csv_path = write_file("t.csv", CSV_TABLE)
    parquet_path = tmp_path / "t.parquet"
    frame = pd.read_csv(csv_path)
    frame["time"] = pd.to_datetime(frame["time"])
    frame.to_parquet(parquet_path)
    from_csv = load_table(csv_path, "user", "item", "time")
    from_parquet = load_dataset(parquet_path, user_col="user", item_col="item", time_col="time")
    assert from_parquet.fingerprint() == from_csv.fingerprint()
    assert from_parquet.user_ids == from_csv.user_ids


def test_table_missing_column_lists_columns(write_file):
    path = write_file("t.csv", CSV_TABLE)
    with pytest.raises(DataError) as error:
        load_table(path, "user_id", "item")
    assert_error(error, path, "column 'user_id'", "'user', 'item', 'time', 'rating'")


def test_table_wrong_separator_is_diagnosed(write_file):
    path = write_file("t.csv", CSV_TABLE.replace(",", ";"))
    with pytest.raises(DataError) as error:
        load_table(path, "user", "item", sep=",")
    assert_error(error, path, "column 'user'", "sep=';'")


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_table_separator_is_sniffed(write_file, sep):
    path = write_file("t.csv", CSV_TABLE.replace(",", sep))
    assert table_columns(path) == ["user", "item", "time", "rating"]
    sniffed = load_table(path, "user", "item", "time")
    assert sniffed.fingerprint() == load_table(write_file("c.csv", CSV_TABLE), "user", "item",
                                               "time").fingerprint()


def test_table_columns_reads_what_load_table_reads(write_file, tmp_path):
    latin1 = write_file("l.csv", "usu\xe1rio;item\nJos\xe9;a\nJos\xe9;b\nJos\xe9;c\n"
                        .encode("latin-1"))
    assert table_columns(latin1) == ["usuário", "item"]
    assert table_columns(latin1, sep=",") == ["usuário;item"]
    with pytest.warns(DataWarning, match="ISO-8859-1"):
        assert load_table(latin1, "usuário", "item").user_ids == ["José"]
    parquet = tmp_path / "t.parquet"
    pd.read_csv(write_file("t.csv", CSV_TABLE)).to_parquet(parquet)
    assert table_columns(parquet) == ["user", "item", "time", "rating"]
    with pytest.raises(DataError, match="not a readable Parquet"):
        table_columns(write_file("bad.parquet", b"PAR1 nope"))


def test_infinite_time_names_its_line(write_file):
    path = write_file("t.csv", "user,item,time\n1,1,1\n1,2,inf\n1,3,3\n")
    with pytest.raises(DataError) as error:
        load_table(path, "user", "item", "time")
    assert_error(error, path, "line 3", "column 'time'", "time inf is not a finite number")


@pytest.mark.parametrize("column", ["user", "item"])
def test_fractional_id_is_refused_not_made_an_extra_id(write_file, column):
    rows = {"user": "1,1\n1,2\n2.5,3\n", "item": "1,1\n1,2\n1,2.5\n1,3\n"}[column]
    path = write_file("t.csv", "user,item\n" + rows)
    with pytest.raises(DataError) as error:
        load_table(path, "user", "item")
    assert_error(error, path, "line 4", f"column '{column}'", "id 2.5 is not a whole number")


def test_one_column_for_user_and_item_is_refused(write_file):
    path = write_file("t.csv", CSV_TABLE)
    with pytest.raises(DataError) as error:
        load_table(path, "user", "user")
    assert_error(error, path, "user_col and item_col", "'user'", "two different columns")
    with pytest.raises(DataError, match="item_col and time_col"):
        load_table(path, "user", "item", "item")


def test_latin1_csv_loads_with_a_warning(write_file):
    path = write_file("l.csv", "user,item\nJos\xe9,a\nJos\xe9,b\nJos\xe9,c\n".encode("latin-1"))
    with pytest.warns(DataWarning, match="line 2: not valid UTF-8"):
        data = load_table(path, "user", "item")
    assert data.user_ids == ["José"]


def test_table_empty_value_names_line(write_file):
    path = write_file("t.csv", "user,item\n1,1\n1,2\n1,\n")
    with pytest.raises(DataError) as error:
        load_table(path, "user", "item")
    assert_error(error, path, "line 4", "empty value in column 'item'")


def test_table_unreadable_time_names_line(write_file):
    path = write_file("t.csv", "user,item,time\n1,1,2021-01-01\n1,2,2021-01-02\n1,3,soon\n")
    with pytest.raises(DataError) as error:
        load_table(path, "user", "item", "time")
    assert_error(error, path, "line 4", "column 'time'", "'soon'")


def test_table_ragged_rows_name_line(write_file):
    path = write_file("t.csv", "user,item\n1,1\n1,2,3,4\n")
    with pytest.raises(DataError) as error:
        load_table(path, "user", "item")
    assert_error(error, path, "line 3")
    assert "\n" not in str(error.value)  # pandas ends its message with a newline


def test_table_empty_and_header_only(write_file):
    empty = write_file("e.csv", "")
    with pytest.raises(DataError, match="empty") as error:
        load_table(empty, "user", "item")
    assert_error(error, empty)
    header_only = write_file("h.csv", "user,item\n")
    with pytest.raises(DataError, match="no interactions") as error:
        load_table(header_only, "user", "item")
    assert_error(error, header_only)


def test_corrupt_parquet(write_file):
    path = write_file("broken.parquet", b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet") as error:
        load_table(path, "user", "item")
    assert_error(error, path)


def test_load_dataset_table_needs_columns(write_file):
    path = write_file("t.csv", CSV_TABLE)
    with pytest.raises(DataError, match="user_col") as error:
        load_dataset(path)
    assert_error(error, path, "'rating'")


@pytest.mark.parametrize("setting", [{"user_col": "user"}, {"sep": ";"}, {"movies": "m.dat"}])
def test_settings_of_another_format_are_named(write_file, movielens_folder, setting):
    txt = write_file("toy.txt", "1 1\n1 2\n1 3\n")
    for path, kind in ((txt, "SASRec .txt"), (movielens_folder, "MovieLens")):
        if "movies" in setting and kind == "SASRec .txt":
            continue
        with pytest.raises(DataError) as error:
            load_dataset(path, **setting)
        assert_error(error, path, repr(next(iter(setting))), kind)


def test_five_core_applies_to_every_file_format(write_file):
    lines = [f"{u} {i}" for u in range(1, 7) for i in (1, 2, 3, 4)] + ["1 99", "2 99"]
    txt = write_file("t.txt", "\n".join(lines) + "\n")
    csv = write_file("t.csv", "user,item\n" + "\n".join(lines).replace(" ", ",") + "\n")
    for data in (load_dataset(txt, five_core=True),
                 load_dataset(csv, user_col="user", item_col="item", five_core=True)):
        assert data.item_ids == [None, 1, 2, 3, 4]
        assert data.stats()["rare_items_dropped"] == 1


def test_a_utf8_byte_order_mark_is_read_as_text(write_file, ratings_dat, movies_dat):
    bom = b"\xef\xbb\xbf"
    plain = load_sasrec_txt(write_file("a.txt", "1 1\n1 2\n1 3\n"))
    with_bom = load_sasrec_txt(write_file("b.txt", bom + b"1 1\n1 2\n1 3\n"))
    assert with_bom.fingerprint() == plain.fingerprint()
    write_file("ml/ratings.dat", bom + ratings_dat)
    folder = write_file("ml/movies.dat", bom + movies_dat).parent
    with pytest.warns(DataWarning, match="dropped 1 users"):
        data = load_movielens(folder)
    assert data.user_ids == [3, 7] and data.item_titles[1] == "Café Stories (1999)"


def test_utf16_is_named(write_file):
    path = write_file("u.txt", "1 1\n1 2\n1 3\n".encode("utf-16"))
    with pytest.raises(DataError) as error:
        load_sasrec_txt(path)
    assert_error(error, path, "UTF-16", "UTF-8")
    table = write_file("u.csv", "user,item\n1,1\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        load_table(table, "user", "item")


@pytest.mark.parametrize("name", ["noise.txt", "noise.csv", "ml/ratings.dat"])
def test_random_bytes_are_called_binary_without_mojibake(write_file, movies_dat, name):
    path = write_file(name, np.random.default_rng(0).bytes(4096))
    write_file("ml/movies.dat", movies_dat)
    with pytest.raises(DataError) as error:
        load_dataset(path if name != "ml/ratings.dat" else path.parent, **(
            {"user_col": "user", "item_col": "item"} if name.endswith(".csv") else {}))
    message = str(error.value)
    assert "not a text file" in message
    assert message.isascii() and message.isprintable() and len(message) < 300


def test_load_dataset_unknown_suffix(write_file):
    path = write_file("data.json", "{}")
    with pytest.raises(DataError, match="unknown kind of dataset") as error:
        load_dataset(path)
    assert_error(error, path)


# --------------------------------------------------------------------------- the real file


@pytest.mark.skipif(not SHARED_ML1M.is_dir(), reason="licensed ML-1M not present beside the repo")
def test_real_ml1m_sasrec_file():
    data = load_dataset(SHARED_ML1M / "ml-1m.txt")
    assert (data.num_users, data.num_items, data.num_interactions) == (6040, 3416, 999611)
    assert data.item_ids[1:4] == [1, 2, 3]  # SASRec ids are already dense: kept as they are
    assert data.item_titles is not None and data.stats()["items_without_title"] == 0
    lengths = data.sequence_lengths()
    assert float(np.median(lengths)) == 96 and lengths.max() == 2277
