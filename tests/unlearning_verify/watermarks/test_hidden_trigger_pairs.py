"""Several marked pairs per owner: disjoint pairs, clean-label poisons within ε, and a test choice made
from the calibration alone (a pair left out is never queried; α split over the pairs)."""

import numpy as np
import pytest
import torch

from fedharness.tasks.image_classification import SmallCNN
from labcore.errors import InputError
from unlearning_verify import statistics as st
from unlearning_verify.keys import OwnerKey
from unlearning_verify.verify import HONORED, INCONCLUSIVE, NOT_HONORED
from unlearning_verify.watermarks.hidden_trigger import (HiddenTriggerWatermark, TransferVerifyConfig, choose_sources,
                                                         mark_pairs, pair_markers, verify_pairs)
from unlearning_verify.watermarks.patch import PatchWatermark


def features():
    torch.manual_seed(0)
    net = SmallCNN().eval().requires_grad_(False)
    return lambda x: net.features(net.body(x))


@pytest.mark.parametrize("mode", ["key", "nearest"])
def test_pairs_are_disjoint_and_every_poison_stays_clean_label_within_eps(mode):
    feats, g = features(), torch.Generator().manual_seed(3)
    x, y = torch.rand(80, 1, 28, 28, generator=g), torch.arange(10).repeat(8)
    owner_of = (np.arange(80) // 10) % 2
    key = OwnerKey.generate(0, "hidden_trigger", 10, seed=4)
    markers = pair_markers(key, (1, 28, 28), feats, 5, eps=32 / 255, max_iterations=4)
    own = torch.as_tensor(owner_of == 0)
    choose_sources(markers, mode, x[own], y[own], 10, seed=0)
    targets, sources = [m.target for m in markers], [m.source for m in markers]
    assert targets[0] == key.target_label() and len(set(targets + sources)) == 10
    assert len({(m.patch.top, m.patch.left, m.patch.pattern.sum().item()) for m in markers}) > 1  # own patches
    assert all(torch.equal(m.sources, x[own][y[own] == m.source]) for m in markers)
    marked = mark_pairs(x, y, owner_of, 0, markers, seed=0)
    expected = (owner_of == 0) & np.isin(y.numpy(), targets)
    assert np.array_equal(marked.marked, expected) and torch.equal(marked.y, y)
    assert (marked.x - x).abs().max() <= 32 / 255 + 1e-6 and not torch.equal(marked.x[expected], x[expected])
    assert torch.equal(marked.x[~expected], x[~expected])
    assert marked.invisibility["max_abs_change"] <= 32 / 255 + 1e-6


def test_one_pair_is_the_keys_single_mark():
    feats = features()
    key = OwnerKey.generate(0, "hidden_trigger", 10, seed=1)
    (only,) = pair_markers(key, (1, 28, 28), feats, 1)
    single = HiddenTriggerWatermark.from_key(key, (1, 28, 28), feats)
    assert (only.target, only.source, only.seed) == (single.target, single.source, single.seed)
    assert torch.equal(only.patch.pattern, single.patch.pattern)


@pytest.mark.parametrize("pairs", [0, 6])
def test_transfer_verification_refuses_pair_counts_that_cannot_be_disjoint(pairs):
    with pytest.raises(InputError, match="pairs"):
        TransferVerifyConfig(pairs=pairs)


def corner_marker(target: int, source: int, top: int) -> HiddenTriggerWatermark:
    return HiddenTriggerWatermark(target, source, PatchWatermark(target, torch.ones(1, 3, 3), top, 0), 0, None)


class Oracle:
    """Answers by the patch it sees: a ``learned`` marker's patch sends the image to its target, anything else
    keeps its true class (the row's index into ``labels``); counts the queries carrying each marker."""

    def __init__(self, markers, learned, labels):
        self.markers, self.learned, self.labels, self.asked = markers, learned, labels, [0] * len(markers)

    def __call__(self, x):
        out = self.labels(x).clone()
        for i, m in enumerate(self.markers):
            has = (x[:, 0, m.patch.top:m.patch.top + 3, :3] == 1).flatten(1).all(1)
            self.asked[i] += int(has.sum())
            if self.learned[i]:
                out[has] = m.target
        return out


def test_only_pairs_whose_calibration_reaches_power_are_queried_at_a_split_alpha():
    """α = 1e-3: half for the three q_high bounds (1e-3/2/3 each), half for the tests made (1e-3/2/m)."""
    g = torch.Generator().manual_seed(0)
    yt = torch.arange(10).repeat_interleave(200)
    xt = 0.5 * torch.rand(len(yt), 1, 28, 28, generator=g)
    xt[:, 0, 0, 27] = yt / 10  # the true class, readable by the oracles
    labels = lambda x: (x[:, 0, 0, 27] * 10).round().long()
    markers = [corner_marker(0, 1, 0), corner_marker(2, 3, 10), corner_marker(4, 5, 20)]
    cfg = TransferVerifyConfig(pairs=3)
    served = {"noop": Oracle(markers, [True, False, True], labels),
              "head_retrain": Oracle(markers, [False] * 3, labels)}
    results = verify_pairs(markers, Oracle(markers, [True, False, True], labels), Oracle(markers, [False] * 3, labels),
                           served, xt, yt, cfg, seed=0)
    for name, verdict in ((n, HONORED if n == "head_retrain" else NOT_HONORED) for n in served):
        result = results[name]
        assert result.verdict == verdict
        assert served[name].asked[1] == 0 and served[name].asked[0] == served[name].asked[2] == 15
        assert result.markers[1].verdict.verdict == INCONCLUSIVE and result.markers[1].verdict.queries == 0
        for r in result.markers:
            cal = r.calibration
            assert cal.q_high == pytest.approx(st.clopper_pearson_upper(cal.q_hits, cal.q_trials, 1 - 1e-3 / 2 / 3))
        assert all(r.verdict.size <= 1e-3 / 2 / 2 for r in (result.markers[0], result.markers[2]))


def test_the_verdict_row_names_the_tested_pairs_and_says_why_per_pair_when_undecided():
    from unlearning_verify.marking import MarkedSet
    from unlearning_verify.watermarks.hidden_trigger import AssumptionCheck, transfer_row

    g = torch.Generator().manual_seed(1)
    yt = torch.arange(10).repeat_interleave(100)
    xt = 0.5 * torch.rand(len(yt), 1, 28, 28, generator=g)
    xt[:, 0, 0, 27] = yt / 10
    labels = lambda x: (x[:, 0, 0, 27] * 10).round().long()
    markers = [corner_marker(0, 1, 0), corner_marker(2, 3, 10)]
    learned = Oracle(markers, [False, True], labels)
    results = verify_pairs(markers, learned, Oracle(markers, [False] * 2, labels), {"noop": learned}, xt, yt,
                           TransferVerifyConfig(pairs=2), seed=0)
    marked = MarkedSet(xt, yt, yt, np.zeros(len(yt), dtype=int), np.zeros(len(yt), dtype=bool), {"psnr": 100.0})
    row = transfer_row(0, "noop", False, marked, markers, results["noop"], AssumptionCheck(0.0, 0.05, 10))
    assert row["verdict"] == NOT_HONORED and row["tested"] == "3→2" and row["queries"] == 30
    assert [p["tested"] for p in row["pairs"]] == [False, True]
    none = verify_pairs(markers, labels, labels, {"noop": labels}, xt, yt, TransferVerifyConfig(pairs=2), seed=0)
    row = transfer_row(0, "noop", False, marked, markers, none["noop"], AssumptionCheck(0.0, 0.05, 10))
    assert row["verdict"] == INCONCLUSIVE and row["tested"] == "none" and row["queries"] == 0
    assert row["reason"].startswith("1→0: ") and "3→2: " in row["reason"] and "not learned" in row["reason"]
