import numpy as np
import pytest

from poisonlab import data


def test_sst2_from_the_shared_files(data_dir):
    ds = data.load("sst2")
    assert (ds["train"].num_rows, ds["validation"].num_rows, ds["test"].num_rows) == (6920, 872, 1821)
    assert set(ds["train"]["label"]) == {0, 1}
    assert ds["train"].features["label"].names == ["negative", "positive"]


def test_mnist_split_is_stratified_and_fixed(data_dir):
    a, b = data.load("mnist"), data.load("mnist")
    assert (a["train"].num_rows, a["test"].num_rows) == (8000, 2000)
    assert a["test"]["label"] == b["test"]["label"]
    counts = np.bincount(a["test"]["label"], minlength=10)
    expected = np.array([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]) * 0.2
    assert np.abs(counts - expected).max() <= 1
    x, y = data.image_tensors(a["test"])
    assert x.shape == (2000, 1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_explicit_path_takes_precedence_and_missing_data_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONLAB_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.InputError) as exc:
        data.load("sst2", tmp_path / "nowhere")
    message = str(exc.value)
    assert "nowhere" in message and "POISONLAB_DATA_DIR" in message and "\n" not in message
    (tmp_path / "mine").mkdir()
    for name, text in [("train.txt", "1 good fun\n0 dull\n"), ("dev.txt", "1 fine\n"), ("test.txt", "0 bad\n")]:
        (tmp_path / "mine" / name).write_text(text)
    ds = data.load("sst2", tmp_path / "mine")
    assert ds["train"]["sentence"] == ["good fun", "dull"]


def test_digits_are_always_available():
    ds = data.load("digits")
    assert ds["train"].num_rows + ds["test"].num_rows == 1797


def test_unknown_dataset():
    with pytest.raises(data.InputError, match="unknown dataset"):
        data.load("imagenet")
