from types import SimpleNamespace

import numpy as np

from fedharness.detection import activation_clustering
from unlearning_verify.providers import get, scrubbing


def test_scrubbing_drops_only_the_flagged_rows(state, monkeypatch, fit_recorder, row_ids):
    flagged = np.array([0, 1, 2, 50, 51])
    monkeypatch.setattr(activation_clustering, "detect",
                        lambda model, layer, x, y, **kw: SimpleNamespace(suspect_indices=flagged))
    rec = fit_recorder
    monkeypatch.setattr(scrubbing, "fit", rec)
    provider = get("scrubbing")
    provider.unlearn(state)
    rows = row_ids(rec.calls[0][0], state.x)
    assert rows == set(range(120)) - set(flagged.tolist())  # the owner's other rows stay: dishonest
    assert provider.flagged.tolist() == flagged.tolist() and not provider.honest


def test_scrubbing_runs_activation_clustering_on_the_features_layer(state):
    provider = get("scrubbing", n_components=3)
    served = provider.unlearn(state)
    assert provider.flagged is not None and served is not state.model
