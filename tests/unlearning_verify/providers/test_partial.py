import pytest

from labcore.errors import InputError
from unlearning_verify.providers import get, partial


@pytest.mark.parametrize("keep", [0.0, 0.5, 1.0])
def test_partial_keeps_the_requested_fraction(state, monkeypatch, keep, fit_recorder, row_ids):
    rec = fit_recorder
    monkeypatch.setattr(partial, "fit", rec)
    get("partial", keep=keep).unlearn(state)
    rows = row_ids(rec.calls[0][0], state.x)
    assert set(range(40, 120)) <= rows
    assert len(rows & set(range(40))) == round(keep * 40)


def test_partial_rejects_bad_fraction(state):
    with pytest.raises(InputError):
        get("partial", keep=1.5).unlearn(state)
