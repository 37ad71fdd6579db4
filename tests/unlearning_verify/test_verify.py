from unlearning_verify import training
from unlearning_verify.keys import OwnerKey
from unlearning_verify.oracles import torch_oracle
from unlearning_verify.verify import (
    HONORED, INCONCLUSIVE, NOT_HONORED, calibrate, combine, held_out_owner_hits, hits, query_pool, verify)
from unlearning_verify.watermarks import build

KW = dict(alpha=1e-3, beta=1e-3, max_queries=30)


def calibrated(s, seed=0):
    pool = query_pool(s.xt, s.yt, s.wm.target, None, seed)
    cal, ver = pool[:600], pool[600:]
    trig = s.wm.trigger(s.xt[cal])
    c = calibrate(hits(torch_oracle(s.model), trig, s.wm.target), len(cal),
                  hits(torch_oracle(s.clean), trig, s.wm.target), len(cal), 10, 1e-3, 1e-3)
    return c, s.wm.trigger(s.xt[ver])


def test_watermark_is_learned_and_verdicts_separate(lsb_scenario):
    s = lsb_scenario
    c, queries = calibrated(s)
    assert c.p_hat > 0.85 and c.q_hat < 0.05
    kept = verify(torch_oracle(s.model), queries, s.wm.target, c, **KW)
    gone = verify(torch_oracle(s.clean), queries, s.wm.target, c, **KW)
    assert kept.verdict == NOT_HONORED and gone.verdict == HONORED
    assert kept.queries <= 30 and kept.power >= 1 - 1e-3 and kept.hits >= kept.k_star > gone.hits
    seq_kept = verify(torch_oracle(s.model), queries, s.wm.target, c, sequential=True, **KW)
    seq_gone = verify(torch_oracle(s.clean), queries, s.wm.target, c, sequential=True, **KW)
    assert (seq_kept.verdict, seq_gone.verdict) == (NOT_HONORED, HONORED)
    assert seq_kept.queries <= kept.queries


def test_wrong_key_does_not_verify(lsb_scenario):
    """Someone holding another key (its own trigger and target) can neither calibrate nor accuse."""
    s = lsb_scenario
    checked = 0
    for seed in range(1, 10):
        wrong = build(OwnerKey.generate(0, "lsb", 10, seed=seed), (1, 28, 28))
        if wrong.target == s.wm.target:
            continue  # a 1-in-K target collision; LSB backdoors of a single owner are not key-specific
        pool = query_pool(s.xt, s.yt, wrong.target, None, seed)
        cal, ver = pool[:600], pool[600:]
        c = calibrate(hits(torch_oracle(s.model), wrong.trigger(s.xt[cal]), wrong.target), len(cal),
                      hits(torch_oracle(s.clean), wrong.trigger(s.xt[cal]), wrong.target), len(cal), 10, 1e-3, 1e-3)
        assert c.p_hat < 0.1
        v = verify(torch_oracle(s.model), wrong.trigger(s.xt[ver]), wrong.target, c, **KW)
        assert v.verdict == INCONCLUSIVE
        checked += 1
    assert checked >= 5


def test_inconclusive_when_p_close_to_q(lsb_scenario):
    s = lsb_scenario
    c = calibrate(52, 100, 48, 100, 10, 1e-3, 1e-3)
    queries = s.wm.trigger(s.xt[:50])
    v = verify(torch_oracle(s.model), queries, s.wm.target, c, **KW)
    assert v.verdict == INCONCLUSIVE and v.queries == 0
    c2 = calibrate(70, 100, 10, 100, 10, 1e-3, 1e-3)  # learned, but more queries needed than the budget
    v2 = verify(torch_oracle(s.model), queries, s.wm.target, c2, alpha=1e-3, beta=1e-3, max_queries=5)
    assert v2.verdict == INCONCLUSIVE and "budget is 5" in v2.reason


def test_held_out_owners_estimate_q_low(lsb_scenario):
    s = lsb_scenario
    h, n = held_out_owner_hits(torch_oracle(s.model), "lsb", s.xt[:500], s.yt[:500], 10, owners=3)
    assert n > 1000 and h / n < 0.1


def test_combination_over_owners(lsb_scenario):
    s = lsb_scenario
    c, queries = calibrated(s)
    kept = verify(torch_oracle(s.model), queries, s.wm.target, c, **KW)
    gone = verify(torch_oracle(s.clean), queries, s.wm.target, c, **KW)
    assert combine([kept, kept, gone], 1e-3)["verdict"] == NOT_HONORED
    assert combine([kept, gone], 1e-3)["verdict"] == HONORED  # a tie does not reject (Athena)
    assert combine([kept, gone, gone], 1e-3)["fisher_p_value"] < 1e-3
    assert combine([], 1e-3)["verdict"] == INCONCLUSIVE


def test_clean_accuracy_cost_is_small(lsb_scenario):
    s = lsb_scenario
    assert training.accuracy(s.model, s.xt, s.yt) > 0.9
