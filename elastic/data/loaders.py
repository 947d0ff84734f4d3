"""Loaders: every supported format becomes an `InteractionData` through one path.

Each loader parses and validates its whole input first and only then builds the dataset, so a
bad file raises one `DataError` (file, line or column, problem, what to do) and nothing is
half-loaded. The shared rules (see docs/data.md) live in `_assemble`:

- internal item ids are dense 1..num_items in the order of the sorted original ids (so a
  SASRec file whose ids are already 1..n keeps them), users are ordered by sorted original id;
- each user's interactions are ordered by time with a stable tie-break (original file order),
  or kept in file order when there is no time;
- consecutive duplicates (same user, same item, adjacent in time) are dropped;
- users with fewer than 3 interactions are dropped (leave-one-out needs 3), with a warning and
  a count in `stats()`; if none remain, it is an error.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from elastic.data.interactions import MIN_SEQUENCE_LENGTH, DataError, DataWarning, InteractionData
from elastic.data.synthetic import SyntheticConfig, make_synthetic

SASREC_FIELDS = ("user", "item")
RATINGS_FIELDS = ("UserID", "MovieID", "Rating", "Timestamp")
ITEM_MAP_FIELDS = ("sasrec_item", "movielens_movie")
MOVIES_FIELDS = ("MovieID", "Title", "Genres")
# files that, lying beside a SASRec .txt, give its items titles and genres
SASREC_MOVIES_FILE = "movies.dat"
SASREC_ITEM_MAP_FILE = "sasrec_to_movielens_items.txt"
# the SASRec preprocessing of ML-1M keeps items with at least this many ratings
FIVE_CORE = 5
# any 18-digit decimal fits in int64
_MAX_ID_DIGITS = 18
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
# separators a CSV may use when none is given, most common first
TABLE_SEPARATORS = (",", ";", "\t", "|")
# what each loader accepts beside the path, for the one sentence about a setting that does not fit
_LOADER_SETTINGS = {
    "MovieLens folder or zip": ("five_core",),
    "SASRec .txt": ("movies", "item_map", "five_core"),
    "table": ("user_col", "item_col", "time_col", "sep", "five_core"),
}
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# bytes that never occur in text: NUL, and C0 controls other than tab, newlines, \f, \v, ^Z
_BINARY_BYTES = np.array(sorted(set(range(32)) - {9, 10, 11, 12, 13, 26}), dtype=np.uint8)
_ASCII_DIGIT, _SPACE, _TAB, _CR, _LF = (ord("0"), ord(" "), ord("\t"), ord("\r"), ord("\n"))


# --------------------------------------------------------------------------- entry point


def load_dataset(spec: str | os.PathLike[str], **kwargs: Any) -> InteractionData:
    """Load whatever `spec` names; the one entry point of the CLI and the app.

    - "synthetic": `make_synthetic(SyntheticConfig(**kwargs))`;
    - a folder, a .zip or a ratings.dat: `load_movielens(path, **kwargs)`;
    - a .txt: `load_sasrec_txt(path, **kwargs)`;
    - a .csv, .tsv, .parquet or .pq: `load_table(path, **kwargs)` (needs user_col, item_col).
    """
    if str(spec) == "synthetic":
        known = {f.name for f in fields(SyntheticConfig)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise DataError(
                f"unknown synthetic setting(s) {unknown}",
                path="synthetic",
                fix=f"Use only {sorted(known)}",
            )
        return make_synthetic(SyntheticConfig(**kwargs))
    path = _existing(spec)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zip" or path.name.lower() == "ratings.dat":
        _check_settings(path, "MovieLens folder or zip", kwargs)
        return load_movielens(path, **kwargs)
    if suffix == ".txt":
        _check_settings(path, "SASRec .txt", kwargs)
        return load_sasrec_txt(path, **kwargs)
    if suffix in TABLE_SUFFIXES:
        _check_settings(path, "table", kwargs)
        if "user_col" not in kwargs or "item_col" not in kwargs:
            columns = table_columns(path, kwargs.get("sep"))
            raise DataError(
                f"a table needs its user and item columns named; the file has columns {columns}",
                path=path,
                fix="Pass user_col=..., item_col=... (and time_col=... if there is one)",
            )
        return load_table(path, **kwargs)
    raise DataError(
        f"unknown kind of dataset (suffix {suffix or 'none'!r})",
        path=path,
        fix='Give "synthetic", a MovieLens folder or .zip, a SASRec .txt, or a .csv/.parquet table',
    )


def _check_settings(path: Path, kind: str, settings: dict[str, Any]) -> None:
    allowed = _LOADER_SETTINGS[kind]
    foreign = [name for name in settings if name not in allowed]
    if foreign:
        names = ", ".join(repr(name) for name in foreign)
        raise DataError(
            f"{names} {'does' if len(foreign) == 1 else 'do'} not apply to a {kind}",
            path=path,
            fix=f"A {kind} takes only {', '.join(allowed)}",
        )


# --------------------------------------------------------------------------- SASRec .txt


def load_sasrec_txt(
    path: str | os.PathLike[str],
    movies: str | os.PathLike[str] | None = None,
    item_map: str | os.PathLike[str] | None = None,
    five_core: bool = False,
) -> InteractionData:
    """A SASRec-format file: `user item` per line (whitespace separated), chronological per user.

    `movies` (a GroupLens movies.dat) and `item_map` (`sasrec_item movielens_movie` per line)
    attach titles and genres; when neither is given and both files lie beside `path` under
    their usual names (movies.dat, sasrec_to_movielens_items.txt), they are attached.
    `five_core=True` drops items with fewer than 5 interactions (see `load_movielens`).
    """
    path = _existing(path)
    data = _read_bytes(path)
    table = _parse_integer_lines(data, path, b" ", SASREC_FIELDS, _sasrec_fix)
    if movies is None and item_map is None:
        beside = path.parent / SASREC_MOVIES_FILE, path.parent / SASREC_ITEM_MAP_FILE
        if all(p.is_file() for p in beside):
            movies, item_map = beside
    metadata = None
    if movies is not None or item_map is not None:
        if movies is None or item_map is None:
            raise DataError(
                "titles for a SASRec file need both movies.dat and the item map",
                path=path,
                fix=f"Pass both movies= and item_map= ({SASREC_ITEM_MAP_FILE}), or neither",
            )
        metadata = _sasrec_metadata(_existing(movies), _existing(item_map))
    return _assemble(
        name=path.stem,
        where=path,
        users=table[:, 0],
        items=table[:, 1],
        times=None,
        metadata=metadata,
        five_core=five_core,
    )


def _sasrec_fix(line: str) -> str:
    if "::" in line:
        return "This looks like a GroupLens ratings.dat: load its folder or zip (load_movielens)"
    if "," in line or ";" in line:
        return (
            "This looks like a CSV table: name the file .csv and load it with load_table(path, "
            "user_col=..., item_col=...) (on the command line: --user-col, --item-col)"
        )
    return "Each line must be 'user item': two integer ids separated by a space"


def _sasrec_metadata(movies: Path, item_map: Path) -> dict[int, tuple[str, str]]:
    movie_info = _parse_movies(_read_bytes(movies), movies)
    pairs = _parse_integer_lines(
        _read_bytes(item_map),
        item_map,
        b" ",
        ITEM_MAP_FIELDS,
        lambda _: "Each line must be 'sasrec_item movielens_movie': two integer ids",
    )
    return {
        int(sasrec): movie_info[int(movie)] for sasrec, movie in pairs if int(movie) in movie_info
    }


# --------------------------------------------------------------------------- GroupLens ML-1M


def load_movielens(path: str | os.PathLike[str], five_core: bool = False) -> InteractionData:
    """GroupLens ML-1M as released: a folder or a .zip holding ratings.dat and movies.dat
    (the path of ratings.dat itself also works).

    Every rating counts as an interaction (implicit feedback, as in SASRec). Each user's
    ratings are sorted by timestamp; equal timestamps keep their order in ratings.dat.
    `five_core=True` drops items with fewer than 5 ratings (one pass over the raw counts,
    as the SASRec preprocessing did).
    """
    path = _existing(path)
    if path.name.lower() == "ratings.dat":
        path = path.parent
    if path.is_dir():
        ratings_bytes, ratings_where, metadata = _movielens_folder(path)
    elif zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        ratings_bytes, ratings_where, metadata = _movielens_zip(path)
    else:
        raise DataError(
            "a MovieLens dataset is a folder or a .zip, not a single file",
            path=path,
            fix="Give the folder holding ratings.dat and movies.dat, or GroupLens's ml-1m.zip",
        )
    table = _parse_integer_lines(
        ratings_bytes,
        ratings_where,
        b"::",
        RATINGS_FIELDS,
        _ratings_fix,
    )
    return _assemble(
        name=path.stem if path.suffix.lower() == ".zip" else path.name,
        where=ratings_where,
        users=table[:, 0],
        items=table[:, 1],
        times=table[:, 3],
        metadata=metadata,
        five_core=five_core,
    )


def _ratings_fix(line: str) -> str:
    fix = "Each line must be UserID::MovieID::Rating::Timestamp (integers joined by '::')"
    for separator in (",", "\t", ";", " "):
        if separator in line:
            return f"{fix}; this line uses {separator!r}"
    return fix


def _movielens_folder(folder: Path) -> tuple[bytes, Path, dict[int, tuple[str, str]] | None]:
    ratings, movies = folder / "ratings.dat", folder / "movies.dat"
    if not ratings.is_file():
        contents = sorted(p.name for p in folder.iterdir())[:10]
        hint = "Give the folder that holds ratings.dat (the unzipped ml-1m folder)"
        if any(name.endswith(".txt") for name in contents):
            hint += "; to load a SASRec .txt file, give the file's path instead"
        raise DataError(
            f"no ratings.dat in this folder (it holds {contents})", path=folder, fix=hint
        )
    if not movies.is_file():
        warnings.warn(
            f"{movies} not found: items will have no titles or genres", DataWarning, stacklevel=3
        )
        return _read_bytes(ratings), ratings, None
    return _read_bytes(ratings), ratings, _parse_movies(_read_bytes(movies), movies)


def _movielens_zip(archive_path: Path) -> tuple[bytes, str, dict[int, tuple[str, str]] | None]:
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = archive.namelist()
            ratings_name = _zip_member(names, "ratings.dat")
            if ratings_name is None:
                raise DataError(
                    f"no ratings.dat in the zip (it holds {names[:10]})",
                    path=archive_path,
                    fix="Give the ml-1m.zip released by GroupLens, or a folder with ratings.dat",
                )
            movies_name = _zip_member(names, "movies.dat")
            ratings = archive.read(ratings_name)
            movies = archive.read(movies_name) if movies_name is not None else None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise DataError(
            f"not a readable zip archive ({error})",
            path=archive_path,
            fix="The file is truncated or corrupt: download or copy it again",
        ) from error
    ratings_where = f"{archive_path}/{ratings_name}"
    if not ratings.strip():
        raise DataError("the file is empty", path=ratings_where, fix="Give a complete ratings.dat")
    ratings = _text_bytes(ratings, ratings_where)
    if movies is None:
        warnings.warn(
            f"{archive_path} holds no movies.dat: items will have no titles or genres",
            DataWarning,
            stacklevel=3,
        )
        return ratings, ratings_where, None
    movies_where = f"{archive_path}/{movies_name}"
    return ratings, ratings_where, _parse_movies(_text_bytes(movies, movies_where), movies_where)


def _zip_member(names: list[str], filename: str) -> str | None:
    # the release nests its files in ml-1m/; take the shallowest match
    matches = sorted((n for n in names if n.rsplit("/", 1)[-1] == filename), key=len)
    return matches[0] if matches else None


def _parse_movies(data: bytes, where: str | Path) -> dict[int, tuple[str, str]]:
    """movies.dat -> {MovieID: (Title, Genres)}; the release is ISO-8859-1 encoded."""
    text = _decode(data, where, warn=False)
    movies: dict[int, tuple[str, str]] = {}
    # split on "\n" only: str.splitlines would also split on latin-1 control characters
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != len(MOVIES_FIELDS):
            raise DataError(
                f"expected 3 fields (MovieID::Title::Genres), found {len(parts)}: "
                f"{_shorten(line)!r}",
                path=where,
                line=number,
                fix="Give the movies.dat released by GroupLens",
            )
        movie_id, title, genres = parts
        if not (movie_id.isascii() and movie_id.isdigit()):
            raise DataError(
                f"{movie_id!r} is not an integer MovieID",
                path=where,
                line=number,
                column="1 (MovieID)",
                fix="Give the movies.dat released by GroupLens",
            )
        movies[int(movie_id)] = (title, genres)
    return movies


# --------------------------------------------------------------------------- CSV / Parquet


def load_table(
    path: str | os.PathLike[str],
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    sep: str | None = None,
    five_core: bool = False,
) -> InteractionData:
    """Any interaction table (CSV with a header line, or Parquet); the caller names the columns.

    Ids may be numbers or strings (a number must be whole: 2.5 is an error, not a new id).
    With `time_col` (finite numbers or dates) each user's rows are sorted by time, ties kept in
    file order; without it, file order is the chronology. A CSV's separator is sniffed from its
    first lines among `TABLE_SEPARATORS` unless `sep` is given (a .tsv is tab-separated). A CSV
    that is not valid UTF-8 is read as ISO-8859-1, with a warning. `five_core=True` drops items
    with fewer than 5 interactions (see `load_movielens`).
    """
    path = _existing(path)
    named = {"user_col": user_col, "item_col": item_col, "time_col": time_col}
    for (first, column), (second, other) in itertools.combinations(named.items(), 2):
        if column is not None and column == other:
            raise DataError(
                f"{first} and {second} both name the column {column!r}",
                path=path,
                fix="Name two different columns: one for users, one for items",
            )
    frame, sep = _read_table(path, sep)
    is_csv = sep is not None
    wanted = [c for c in (user_col, item_col, time_col) if c is not None]
    for column in wanted:
        if column not in frame.columns:
            raise DataError(
                f"no column named {column!r}; the file has columns {list(frame.columns)}",
                path=path,
                column=repr(column),
                fix=_missing_column_fix(frame, sep) if is_csv else "Name one of these columns",
            )
    if is_csv:
        # blank lines were kept (skip_blank_lines=False) so that row i is line i + 2
        frame = frame.dropna(how="all")
    for column in wanted:
        missing = frame.index[frame[column].isna().to_numpy()]
        if len(missing):
            raise DataError(
                f"empty value in column {column!r}",
                path=path,
                **_locate(missing[0], is_csv),
                fix="Fill in or remove that row",
            )
    times = _time_values(frame[time_col], path, is_csv) if time_col is not None else None
    return _assemble(
        name=path.stem,
        where=path,
        users=_id_values(frame[user_col], path, is_csv),
        items=_id_values(frame[item_col], path, is_csv),
        times=times,
        metadata=None,
        five_core=five_core,
    )


def table_columns(path: str | os.PathLike[str], sep: str | None = None) -> list[str]:
    """The column names of a table, read exactly as `load_table` reads the file (same
    encoding fallback, same separator sniffing), for a form that lets the user pick them."""
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return [str(name) for name in _read_parquet(path, schema_only=True).columns]
    frame, _sep = _read_table(path, sep, header_only=True)
    return [str(name) for name in frame.columns]


def _read_table(
    path: Path, sep: str | None, header_only: bool = False
) -> tuple[pd.DataFrame, str | None]:
    """(frame, the separator used); the separator is None for Parquet."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path), None
    if suffix not in (".csv", ".tsv"):
        raise DataError(
            f"unknown table suffix {suffix!r}",
            path=path,
            fix="Use a .csv, .tsv, .parquet or .pq file",
        )
    text = _decode(_read_bytes(path), path, warn=not header_only)
    if sep is None:
        sep = "\t" if suffix == ".tsv" else _sniff_separator(text)
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, skip_blank_lines=False, nrows=0 if header_only else None
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        line = re.search(r"line (\d+)", str(error))
        raise DataError(
            f"cannot be read as a table separated by {sep!r} ({str(error).strip()})",
            path=path,
            line=int(line.group(1)) if line else None,
            fix="Check that every line has the same number of fields, or pass sep=... (--sep)",
        ) from error
    return frame, sep


def _sniff_separator(text: str) -> str:
    """The separator of a CSV among TABLE_SEPARATORS, from its first lines; "," when unsure.

    csv.Sniffer picks the candidate whose count is the same on every sampled line; when it
    cannot decide (one column, or a single line), the header's most frequent candidate wins."""
    lines = [line for line in text.split("\n", 50)[:50] if line.strip()]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters="".join(TABLE_SEPARATORS)).delimiter
    except csv.Error:
        counts = {candidate: lines[0].count(candidate) for candidate in TABLE_SEPARATORS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _read_parquet(path: Path, schema_only: bool = False) -> pd.DataFrame:
    try:
        import pyarrow.parquet
    except ImportError as error:
        raise DataError(
            "reading Parquet needs the pyarrow package",
            path=path,
            fix="pip install pyarrow (or pip install elastic-recsys[parquet])",
        ) from error
    if not path.stat().st_size:
        raise DataError("the file is empty", path=path, fix="Give a complete Parquet file")
    try:
        if schema_only:
            return pyarrow.parquet.read_schema(path).empty_table().to_pandas()
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise DataError(
            f"not a readable Parquet file ({error})",
            path=path,
            fix="The file is truncated, corrupt or not Parquet: write it again",
        ) from error


def _missing_column_fix(frame: pd.DataFrame, sep: str) -> str:
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        for candidate in (";", "\t", "|", ","):
            if candidate != sep and candidate in header:
                return (f"The file seems to be separated by {candidate!r}: pass sep={candidate!r} "
                        f"(on the command line: --sep {candidate!r})")
    return "Name one of these columns"


def _locate(index: Any, is_csv: bool) -> dict[str, int]:
    # CSV: line 1 is the header, so data row i (0-based) is line i + 2
    return {"line": int(index) + 2} if is_csv else {"row": int(index) + 1}


def _id_values(column: pd.Series, path: Path, is_csv: bool) -> np.ndarray:
    """Ids as they are, except numbers: whole ones become int64 (a CSV with a blank line or a
    Parquet float column stores 5 as 5.0, which must stay the id 5), others are an error."""
    if not pd.api.types.is_float_dtype(column):
        return column.to_numpy()
    values = column.to_numpy()
    fractional = np.flatnonzero(~np.isfinite(values) | (values % 1 != 0))
    if fractional.size:
        where = column.index[fractional[0]]
        raise DataError(
            f"id {values[fractional[0]].item()!r} is not a whole number",
            path=path,
            **_locate(where, is_csv),
            column=repr(column.name),
            fix="Ids must be whole numbers or text; check that this is the id column",
        )
    return values.astype(np.int64)


def _time_values(column: pd.Series, path: Path, is_csv: bool) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy()
        infinite = np.flatnonzero(~np.isfinite(values.astype(np.float64)))
        if infinite.size:
            where = column.index[infinite[0]]
            raise DataError(
                f"time {values[infinite[0]].item()!r} is not a finite number",
                path=path,
                **_locate(where, is_csv),
                column=repr(column.name),
                fix="Times must be finite numbers, or dates written in one format throughout",
            )
        return values
    # dates: one format, inferred from the first row; UTC so mixed offsets compare correctly
    times = pd.to_datetime(column, errors="coerce", utc=True)
    unreadable = column.index[times.isna().to_numpy()]
    if len(unreadable):
        raise DataError(
            f"cannot read {column[unreadable[0]]!r} as a time",
            path=path,
            **_locate(unreadable[0], is_csv),
            column=repr(column.name),
            fix="Times must be numbers, or dates written in one format throughout",
        )
    return times.dt.tz_convert(None).to_numpy()


# --------------------------------------------------------------------------- shared helpers


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            "no such file or folder",
            path=path,
            fix=f"Check the path (relative paths start from {Path.cwd()})",
        )
    return path


def _read_bytes(path: Path) -> bytes:
    path = _existing(path)
    if path.is_dir():
        raise DataError("is a folder, expected a file", path=path, fix="Give the file's path")
    data = path.read_bytes()
    if not data.strip():
        raise DataError("the file is empty", path=path, fix="Give a file with interactions in it")
    return _text_bytes(data, path)


def _text_bytes(data: bytes, where: str | Path) -> bytes:
    """The bytes of a text file without a UTF-8 byte-order mark (Windows editors write one);
    a UTF-16 or binary file is an error, so the user never sees its bytes as mojibake."""
    if data.startswith(_UTF16_BOMS):
        raise DataError(
            "the file is UTF-16 text (it starts with a UTF-16 byte-order mark)",
            path=where,
            fix="Save it again as UTF-8",
        )
    data = data.removeprefix(_UTF8_BOM)
    head = np.frombuffer(data[: 1 << 16], dtype=np.uint8)
    binary = np.flatnonzero(np.isin(head, _BINARY_BYTES))
    # one stray control character is a typo (reported with its line); many are binary data
    if binary.size and (head[binary[0]] == 0 or binary.size > head.size // 100):
        line = data.count(b"\n", 0, int(binary[0])) + 1
        raise DataError(
            f"not a text file (binary data from line {line}: byte {head[binary[0]]:#04x})",
            path=where,
            fix="Give a text file (UTF-8 or latin-1); a file saved as UTF-16 must be saved "
            "again as UTF-8",
        )
    return data


def _decode(data: bytes, where: str | Path, warn: bool) -> str:
    """UTF-8 if the bytes are valid UTF-8, else ISO-8859-1 (GroupLens files, old CSV exports).

    Latin-1 text with accents is almost never valid UTF-8, so the order is safe; ISO-8859-1
    decodes any byte, so this never fails.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if warn:
            line = data.count(b"\n", 0, error.start) + 1
            warnings.warn(
                f"{where}, line {line}: not valid UTF-8; read the file as ISO-8859-1 (latin-1)",
                DataWarning,
                stacklevel=4,
            )
        return data.decode("iso-8859-1")


def _shorten(line: str, limit: int = 60) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _parse_integer_lines(
    data: bytes,
    where: str | Path,
    separator: bytes,
    names: tuple[str, ...],
    fix_for: Callable[[str], str],
) -> np.ndarray:
    """(rows, len(names)) int64 from lines of non-negative integers joined by `separator`.

    `separator=b" "` means runs of spaces or tabs. Blank lines are skipped. The whole file is
    validated first; the first bad line raises a DataError naming it, with `fix_for(line)`
    as the advice.
    """
    bad_line = _first_malformed_line(data, separator, len(names))
    if bad_line is not None:
        _raise_malformed(data, where, bad_line, separator, names, fix_for)
    text = data if separator == b" " else data.replace(separator, b" ")
    return pd.read_csv(
        io.BytesIO(text), sep=r"\s+", header=None, names=list(names), dtype=np.int64
    ).to_numpy()


def _first_malformed_line(data: bytes, separator: bytes, num_fields: int) -> int | None:
    """1-based number of the first line that is not `num_fields` integers, or None.

    Vectorised over the bytes, so a million-line file is checked in a fraction of a second.
    """
    original = np.frombuffer(data, dtype=np.uint8)
    if separator == b" ":
        text = original
        is_separator = (text == _SPACE) | (text == _TAB)
    else:
        # a same-length replacement keeps byte offsets, hence line numbers, unchanged
        text = np.frombuffer(data.replace(separator, b" " * len(separator)), dtype=np.uint8)
        is_separator = (text == _SPACE) & (original != _SPACE)
    is_digit = (text >= _ASCII_DIGIT) & (text <= _ASCII_DIGIT + 9)
    newlines = np.flatnonzero(text == _LF)
    allowed = is_digit | is_separator | (text == _LF) | (text == _CR)

    def line_of(offsets: np.ndarray) -> np.ndarray:
        return np.searchsorted(newlines, offsets) + 1

    bad_lines = []
    bad_bytes = np.flatnonzero(~allowed)
    if bad_bytes.size:
        bad_lines.append(int(line_of(bad_bytes[:1])[0]))
    token_starts = np.flatnonzero(is_digit & ~np.concatenate(([False], is_digit[:-1])))
    token_ends = np.flatnonzero(is_digit & ~np.concatenate((is_digit[1:], [False])))
    token_lines = line_of(token_starts)
    fields_per_line = np.bincount(token_lines, minlength=newlines.size + 2)
    wrong_count = np.flatnonzero((fields_per_line != 0) & (fields_per_line != num_fields))
    if wrong_count.size:
        bad_lines.append(int(wrong_count[0]))
    too_long = np.flatnonzero(token_ends - token_starts + 1 > _MAX_ID_DIGITS)
    if too_long.size:
        bad_lines.append(int(token_lines[too_long[0]]))
    return min(bad_lines) if bad_lines else None


def _raise_malformed(
    data: bytes,
    where: str | Path,
    number: int,
    separator: bytes,
    names: tuple[str, ...],
    fix_for: Callable[[str], str],
) -> None:
    line = data.split(b"\n", number)[number - 1].rstrip(b"\r").decode("iso-8859-1")
    fix = fix_for(line)
    layout = " ".join(names) if separator == b" " else separator.decode().join(names)
    parts = line.split() if separator == b" " else line.split(separator.decode())
    if len(parts) != len(names):
        raise DataError(
            f"expected {len(names)} fields ({layout}), found {len(parts)}: {_shorten(line)!r}",
            path=where,
            line=number,
            fix=fix,
        )
    for index, (name, value) in enumerate(zip(names, parts, strict=True), start=1):
        if not (value.isascii() and value.isdigit()):
            raise DataError(
                f"{_shorten(value)!r} is not a non-negative integer {name}",
                path=where,
                line=number,
                column=f"{index} ({name})",
                fix=fix,
            )
        if len(value) > _MAX_ID_DIGITS:
            raise DataError(
                f"{name} {value} has more than {_MAX_ID_DIGITS} digits",
                path=where,
                line=number,
                column=f"{index} ({name})",
                fix="Ids must fit in a 64-bit integer",
            )
    # only characters str.split treats as blanks but the format does not (e.g. "\v") get here
    raise DataError(f"unexpected character in {_shorten(line)!r}", path=where, line=number, fix=fix)


def _factorize_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques): codes index the sorted distinct values."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:
        # mixed types (e.g. ints and strings in one Parquet column): compare as text
        codes, uniques = pd.factorize(values.astype(str), sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def _assemble(
    *,
    name: str,
    where: str | Path,
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray | None,
    metadata: dict[Any, tuple[str, str]] | None,
    five_core: bool = False,
) -> InteractionData:
    """Rows (user, item, time) -> InteractionData, applying the rules in the module docstring."""
    if len(users) == 0:
        raise DataError("no interactions to load", path=where, fix="Give a file with interactions")
    user_codes, user_values = _factorize_sorted(users)
    item_codes, item_values = _factorize_sorted(items)
    cleaning: dict[str, int] = {}
    if five_core:
        # one pass over the raw counts, as the SASRec preprocessing of ML-1M did
        item_counts = np.bincount(item_codes)
        frequent = item_counts[item_codes] >= FIVE_CORE
        cleaning["rare_items_dropped"] = int((item_counts < FIVE_CORE).sum())
        cleaning["rare_item_interactions_dropped"] = int((~frequent).sum())
        user_codes, item_codes = user_codes[frequent], item_codes[frequent]
        times = None if times is None else times[frequent]
        if not frequent.any():
            raise DataError(
                f"no item has {FIVE_CORE} or more interactions, so the 5-core filter keeps nothing",
                path=where,
                fix="Load the file without the 5-core filter",
            )

    # two stable sorts: by time, then by user; equal times keep their file order
    order = np.arange(len(user_codes)) if times is None else np.argsort(times, kind="stable")
    order = order[np.argsort(user_codes[order], kind="stable")]
    user_codes, item_codes = user_codes[order], item_codes[order]

    repeated = np.zeros(len(user_codes), dtype=bool)
    repeated[1:] = (user_codes[1:] == user_codes[:-1]) & (item_codes[1:] == item_codes[:-1])
    cleaning["duplicates_dropped"] = int(repeated.sum())
    if cleaning["duplicates_dropped"]:
        warnings.warn(
            f"{where}: dropped {cleaning['duplicates_dropped']} consecutive duplicate "
            "interactions (same user, same item, one right after the other)",
            DataWarning,
            stacklevel=3,
        )
        user_codes, item_codes = user_codes[~repeated], item_codes[~repeated]

    lengths = np.bincount(user_codes, minlength=len(user_values))
    long_enough = lengths >= MIN_SEQUENCE_LENGTH
    if not long_enough.any():
        raise DataError(
            f"no user has {MIN_SEQUENCE_LENGTH} or more interactions "
            f"(longest: {int(lengths.max())})",
            path=where,
            fix="Leave-one-out needs 3 interactions per user (train, validation, test)",
        )
    cleaning["short_users_dropped"] = int((~long_enough).sum())
    if cleaning["short_users_dropped"]:
        warnings.warn(
            f"{where}: dropped {cleaning['short_users_dropped']} users with fewer than "
            f"{MIN_SEQUENCE_LENGTH} interactions (leave-one-out needs {MIN_SEQUENCE_LENGTH})",
            DataWarning,
            stacklevel=3,
        )
        kept_rows = long_enough[user_codes]
        user_codes, item_codes = user_codes[kept_rows], item_codes[kept_rows]

    # dense ids over the surviving items, in sorted original-id order
    surviving_items, dense_items = np.unique(item_codes, return_inverse=True)
    kept_users = np.flatnonzero(long_enough)
    boundaries = np.cumsum(lengths[kept_users])[:-1]
    sequences = np.split((dense_items + 1).astype(np.int64), boundaries)
    item_ids = [None, *item_values[surviving_items].tolist()]

    titles = genres = None
    if metadata is not None:
        described = [metadata.get(item) for item in item_ids[1:]]
        titles = ["", *(d[0] if d else "" for d in described)]
        genres = ["", *(d[1] if d else "" for d in described)]
        cleaning["items_without_title"] = sum(d is None for d in described)
        if cleaning["items_without_title"]:
            warnings.warn(
                f"{where}: {cleaning['items_without_title']} items have no title in the metadata",
                DataWarning,
                stacklevel=3,
            )
    return InteractionData(
        name=name,
        sequences=sequences,
        num_items=len(surviving_items),
        user_ids=user_values[kept_users].tolist(),
        item_ids=item_ids,
        item_titles=titles,
        item_genres=genres,
        source=str(where),
        cleaning=cleaning,
    )
