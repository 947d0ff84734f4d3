"""Fixtures for the data tests: tiny files written to tmp_path (never the licensed ML-1M)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

# A made-up GroupLens-style catalogue; "Café" is written in ISO-8859-1, as in the release.
MOVIES_DAT = (
    "10::Caf\xe9 Stories (1999)::Comedy|Romance\n"
    "20::Night Train (1987)::Thriller\n"
    "30::Paper Moons (2003)::Drama\n"
    "40::Long Winter (1995)::Drama|War\n"
).encode("iso-8859-1")

# Users 7 and 3, out of time order, with a timestamp tie for user 3 (items 30 then 10 in the
# file at t=200), and user 9 with only two ratings (dropped: leave-one-out needs 3).
RATINGS_DAT = (
    b"7::20::4::500\n"
    b"3::30::5::200\n"
    b"7::10::3::100\n"
    b"3::10::4::200\n"
    b"3::40::2::100\n"
    b"7::30::5::300\n"
    b"9::10::1::100\n"
    b"9::20::1::200\n"
    b"3::20::3::900\n"
)


@pytest.fixture
def movies_dat() -> bytes:
    return MOVIES_DAT


@pytest.fixture
def ratings_dat() -> bytes:
    return RATINGS_DAT


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes | str], Path]:
    """write_file(relative_name, content) -> path; str content is written as UTF-8."""

    def write(name: str, content: bytes | str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture
def movielens_folder(write_file: Callable[[str, bytes | str], Path]) -> Path:
    write_file("ml-tiny/ratings.dat", RATINGS_DAT)
    return write_file("ml-tiny/movies.dat", MOVIES_DAT).parent


@pytest.fixture
def movielens_zip(tmp_path: Path) -> Path:
    path = tmp_path / "ml-tiny.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-tiny/ratings.dat", RATINGS_DAT)
        archive.writestr("ml-tiny/movies.dat", MOVIES_DAT)
        archive.writestr("ml-tiny/README", "made-up data for tests\n")
    return path
