"""A second downstream format: any sentence-level sentiment file in ``LABEL SENTENCE`` form loads through
the data registry (``sentiment``) with SST-2's splits and columns."""

import pytest

from labcore.errors import InputError
from poisonlab import data


def _write(path, n):
    lines = [f"{i % 2} review number {i} is {'good' if i % 2 else 'bad'}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n\n")
    return lines


def test_one_label_sentence_file_splits_into_train_validation_test(tmp_path):
    lines = _write(tmp_path / "reviews.txt", 40)
    ds = data.load("sentiment", tmp_path / "reviews.txt")
    assert [len(ds[s]) for s in ("train", "validation", "test")] == [32, 4, 4]
    assert ds["train"].features == data.SST2_FEATURES
    rows = sorted(s for split in ds.values() for s in split["sentence"])
    assert rows == sorted(line.partition(" ")[2] for line in lines)
    assert all(int(s.split()[2]) % 2 == y for s, y in zip(ds["train"]["sentence"], ds["train"]["label"]))
    again = data.load_sentiment(tmp_path / "reviews.txt")
    assert again["test"]["sentence"] == ds["test"]["sentence"]


def test_a_folder_loads_as_sst2_and_bad_files_are_refused(tmp_path, data_dir):
    assert len(data.load_sentiment(data_dir / "sst2")["validation"]) == 872
    bad = tmp_path / "bad.txt"
    bad.write_text("positive a fine film\n")
    with pytest.raises(InputError, match="bad.txt:1: expected 'LABEL SENTENCE'"):
        data.load("sentiment", bad)
    _write(bad, 5)
    with pytest.raises(InputError, match="needs at least 10"):
        data.load("sentiment", bad)
