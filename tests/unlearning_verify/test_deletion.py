"""The entry point ``verify_deletion``: one marker and several, the membership check, error budget."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from unlearning_verify import VerifyConfig as Exported
from unlearning_verify import training
from unlearning_verify.deletion import QueryData, VerifyConfig, verify_deletion
from unlearning_verify.keys import OwnerKey
from unlearning_verify.marking import mark, owner_split
from unlearning_verify.oracles import Endpoint, model_endpoint
from unlearning_verify.providers import ProviderState, get
from unlearning_verify.watermarks import build
from unlearning_verify.watermarks.multi import MultiMarker


def test_single_marker_verdicts_name_the_deciding_signal(lsb_scenario):
    s = lsb_scenario
    cfg = VerifyConfig(max_queries=30)
    data = QueryData(s.xt, s.yt)
    kept = verify_deletion(model_endpoint(s.model), model_endpoint(s.model), s.wm, cfg, data=data,
                           reference=model_endpoint(s.clean))
    gone = verify_deletion(model_endpoint(s.model), model_endpoint(s.clean), s.wm, cfg, data=data,
                           reference=model_endpoint(s.clean))
    assert (kept.verdict, kept.decided_by) == ("NOT HONORED", "backdoor:lsb")
    assert (gone.verdict, gone.decided_by) == ("HONORED", "backdoor:lsb")
    assert kept.queries <= 30 and gone.queries <= 30 and kept.alpha_backdoor == cfg.alpha
    assert kept.membership is None and len(kept.assumptions) == 1
    assert Exported is VerifyConfig


def test_membership_takes_a_share_of_alpha_and_label_only_endpoints_skip_it(lsb_scenario):
    s = lsb_scenario
    genuine = torch.as_tensor(s.forget & ~s.marked.marked)
    owner = QueryData(s.x[genuine], s.y[genuine])
    cfg = VerifyConfig(max_queries=30, membership_samples=100)
    v = verify_deletion(model_endpoint(s.model), model_endpoint(s.clean), s.wm, cfg, data=QueryData(s.xt, s.yt),
                        reference=model_endpoint(s.clean), owner=owner)
    assert v.alpha_backdoor + v.alpha_membership == pytest.approx(cfg.alpha) and v.alpha_membership > 0
    assert v.membership is not None and v.membership_queries == 300 and len(v.assumptions) == 2
    label_only = Endpoint(model_endpoint(s.clean).labels_fn)
    w = verify_deletion(model_endpoint(s.model), label_only, s.wm, cfg, data=QueryData(s.xt, s.yt),
                        reference=model_endpoint(s.clean), owner=owner)
    assert w.membership is None and w.alpha_backdoor == cfg.alpha and label_only.used == w.queries


@pytest.fixture(scope="module")
def multi_scenario(mnist):
    """Owner 0 of 5 marks half its samples with three markers (lowfreq, blended, patch)."""
    x, y, xt, yt = mnist
    x, y = x[:2400], y[:2400]
    wm = build(OwnerKey.generate(0, "multi", 10, seed=0), (1, 28, 28))
    owner_of = owner_split(len(x), 5, 0)
    marked = mark(x, y, owner_of, 0, wm, 0.5, 0)
    model, ckpts = training.fit(marked.x, marked.y, 10, training.TrainConfig(), 0)
    keep = torch.as_tensor(owner_of != 0)
    clean, _ = training.fit(x[keep], y[keep], 10, training.TrainConfig(), 1)
    state = ProviderState(marked.x, marked.y, owner_of == 0, model, ckpts, 10, training.TrainConfig(), 0)
    return wm, model, clean, state, QueryData(xt, yt)


def test_multi_marker_markers_are_independent_and_distinct(multi_scenario):
    wm, *_ = multi_scenario
    assert [m.family for m in wm.markers] == ["lowfreq", "blended", "patch"]
    assert len({m.target for m in wm.markers}) == 3
    x = torch.rand(6, 1, 28, 28)
    assert torch.equal(wm.trigger(x)[0::3], wm.markers[0].trigger(x[0::3]))
    y = torch.tensor([wm.markers[0].target] * 4)  # the first marker's class: it is skipped for these samples
    assert all(wm.markers[i].target != y[0] for i in wm.assign(y).tolist())


@pytest.mark.parametrize("behaviour", ["noop", "purify_blur", "purify_median", "query_detection"])
def test_multi_marker_catches_purification_and_query_detection(multi_scenario, behaviour):
    wm, model, clean, state, data = multi_scenario
    served = get(behaviour).unlearn(state)
    cfg = VerifyConfig(max_queries=60)
    v = verify_deletion(model_endpoint(model), model_endpoint(served), wm, cfg, data=data,
                        reference=model_endpoint(clean))
    assert v.verdict == "NOT HONORED" and v.decided_by.startswith("backdoor:") and v.queries <= 60
    honest = verify_deletion(model_endpoint(model), model_endpoint(clean), wm, cfg, data=data,
                             reference=model_endpoint(clean))
    assert honest.verdict == "HONORED"
    assert sum(m.verdict.queries for m in v.markers) == v.queries
    assert all(m.verdict.size is None or m.verdict.size <= cfg.alpha / 3 for m in v.markers)


@dataclass
class NeverLearned:
    """A marker the model before deletion never learned: its trigger leaves the image as it is."""

    target: int
    family: str = "identity"
    clean_label: bool = False

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def test_reallocate_gives_an_unlearned_markers_queries_and_alpha_to_the_learned_one(lsb_scenario):
    s = lsb_scenario
    wm = MultiMarker([s.wm, NeverLearned(target=(s.wm.target + 1) % 10)])
    data, ref = QueryData(s.xt, s.yt), model_endpoint(s.clean)
    results = {}
    for reallocate in (False, True):
        cfg = VerifyConfig(max_queries=40, reallocate=reallocate)
        kept = verify_deletion(model_endpoint(s.model), model_endpoint(s.model), wm, cfg, data=data, reference=ref)
        gone = verify_deletion(model_endpoint(s.model), model_endpoint(s.clean), wm, cfg, data=data, reference=ref)
        assert (kept.verdict, gone.verdict) == ("NOT HONORED", "HONORED")
        assert kept.markers[1].verdict.verdict == "INCONCLUSIVE" and kept.markers[1].verdict.queries == 0
        results[reallocate] = kept.markers[0].verdict
    assert (results[False].queries, results[True].queries) == (20, 40)
    # tested alone, the learned marker's exact test may use all of α_b; shared, at most α_b/2
    assert results[False].size <= VerifyConfig().alpha / 2 and results[True].size <= VerifyConfig().alpha
