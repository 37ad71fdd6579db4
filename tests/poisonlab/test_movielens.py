"""The ``movielens`` data set: explicit files, data folders, the recbole wheel copy, one-line errors."""

import numpy as np
import pytest

from labcore.errors import InputError
from poisonlab import data
from tests.fedrec.conftest import write_udata


def test_the_wheel_copy_is_movielens_100k():
    table = data.load("movielens")["train"]
    assert table.num_rows == 100_000
    assert len(np.unique(table["user_id"])) == 943 and len(np.unique(table["item_id"])) == 1682


def test_an_explicit_udata_file_or_its_folder_loads(tmp_path):
    path = write_udata(tmp_path / "u.data", num_users=5, per_user=4)
    by_file = data.load("movielens", path)["train"]
    by_folder = data.load("movielens", tmp_path)["train"]
    assert by_file.num_rows == by_folder.num_rows == 20
    assert by_file["user_id"][0] == 1 and by_file.column_names == ["user_id", "item_id", "rating", "timestamp"]


def test_a_missing_path_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError) as exc:
        data.load("movielens", tmp_path / "nowhere")
    assert "not found" in str(exc.value) and "\n" not in str(exc.value)
