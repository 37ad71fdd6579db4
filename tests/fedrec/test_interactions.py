import numpy as np
import pytest

from fedrec.interactions import from_columns, leave_one_out, parse_table
from labcore.errors import InputError
from tests.fedrec.conftest import write_udata


def test_udata_and_recbole_header_parse_to_the_same_columns(tmp_path):
    text = write_udata(tmp_path / "u.data").read_text()
    plain = parse_table(text)
    header = parse_table("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + text)
    assert all(np.array_equal(plain[k], header[k]) for k in plain)
    assert len(plain["user_id"]) == 12 * 8


@pytest.mark.parametrize("bad", ["1\t2\n", "1\tx\t3\t4\n", "\n\n"])
def test_malformed_lines_are_one_line_input_errors(bad):
    with pytest.raises(InputError) as exc:
        parse_table(bad, "u.data")
    assert "\n" not in str(exc.value)


def test_leave_one_out_holds_out_the_latest_item_and_samples_unseen_negatives(tmp_path):
    cols = parse_table(write_udata(tmp_path / "u.data").read_text())
    data, _ = from_columns(cols)
    split = leave_one_out(data, num_negatives=10, seed=0)
    for u in range(data.num_users):
        mine = data.items[data.users == u]
        latest = mine[np.argmax(data.timestamps[data.users == u])]
        assert split.test_item[u] == latest and latest not in split.train[u]
        assert len(set(split.test_negatives[u])) == 10 and not set(split.test_negatives[u]) & set(mine)


def test_a_user_with_a_single_interaction_is_an_input_error():
    cols = {"user_id": np.array([1, 1, 2]), "item_id": np.array([1, 2, 1]), "rating": np.ones(3), "timestamp": np.arange(3.0)}
    data, _ = from_columns(cols)
    with pytest.raises(InputError, match="fewer than 2 interactions"):
        leave_one_out(data, 1)
