from unlearning_verify.providers import get, retrain


def test_retrain_trains_on_exactly_the_retained_rows(state, monkeypatch, fit_recorder, row_ids):
    rec = fit_recorder
    monkeypatch.setattr(retrain, "fit", rec)
    get("retrain").unlearn(state)
    (x, _), = rec.calls
    assert row_ids(x, state.x) == set(range(40, 120))
