import math

import numpy as np
import pytest

from nlp_poison.defenses import (
    BigramLM, cross_fitted_perplexity, distance_ranking, early_stopping, found_curve, inspected_to_find, perplexity_ranking,
    sentence_embeddings,
)


def test_bigram_probabilities_match_hand_computation():
    lm = BigramLM.fit(["a b", "a c"], d=0.5)
    # counts: (<s>,a)=2 (a,b)=1 (a,c)=1 (b,</s>)=1 (c,</s>)=1; 5 bigram types; vocab {a,b,c,</s>}
    p_cont_b = (1 + 1) / (5 + 4 + 1)
    assert lm.prob("a", "b") == pytest.approx((1 - 0.5) / 2 + (0.5 * 2 / 2) * p_cont_b)
    total = sum(lm.prob("a", w) for w in lm.vocab)
    assert total < 1.0 + 1e-9
    assert lm.perplexity("a b") < lm.perplexity("b a")


def test_disfluent_sentences_rank_first(sst2):
    lm = BigramLM.fit(list(sst2["train"]["sentence"][:3000]))
    texts = list(sst2["train"]["sentence"][3000:3100]) + ["neo hol succ flat minutes refres bad"]
    order = perplexity_ranking(np.array([lm.perplexity(t) for t in texts]))
    assert order[0] == 100
    assert math.isfinite(lm.perplexity("zzzz qqqq"))


def test_found_curve_and_inspection_count():
    curve = found_curve(np.array([3, 0, 1, 2]), np.array([True, False, False, True]))
    assert curve.tolist() == [1, 2, 2, 2]
    assert inspected_to_find(curve, 0.5) == 1 and inspected_to_find(curve, 1.0) == 2
    assert inspected_to_find(found_curve(np.array([1, 2, 0]), np.array([True, False, False])), 1.0) == 3


def test_distance_ranking_puts_near_duplicates_first(surrogate, tiny_tokenizer):
    train = ["a good film", "the plot is a mess and too long", "bad acting everywhere"]
    trig = ["the plot is a mess and too long indeed"]
    order, dist = distance_ranking(sentence_embeddings(surrogate, tiny_tokenizer, train), sentence_embeddings(surrogate, tiny_tokenizer, trig))
    assert order[0] == 1 and dist[1] == dist.min()


def test_early_stopping_table():
    summary = [
        {"poisons": "x", "count": 5, "epoch": 1, "effectiveness_mean": 0.2, "cacc_mean": 0.7},
        {"poisons": "x", "count": 5, "epoch": 2, "effectiveness_mean": 0.6, "cacc_mean": 0.8},
        {"poisons": "x", "count": 1, "epoch": 1, "effectiveness_mean": 0.0, "cacc_mean": 0.7},
    ]
    assert early_stopping(summary, "x", 5) == [
        {"epoch": 1, "effectiveness": 0.2, "cacc": 0.7}, {"epoch": 2, "effectiveness": 0.6, "cacc": 0.8}
    ]


def test_cross_fitting_scores_each_sentence_with_a_model_that_never_saw_it():
    texts = ["zq xv wk"] + ["the film is good"] * 30 + ["the film is bad"] * 30
    ppl = cross_fitted_perplexity(texts, folds=2, seed=0)
    assert ppl.argmax() == 0
    assert ppl[0] > BigramLM.fit(texts).perplexity(texts[0])


def test_a_bad_causal_lm_folder_is_an_input_error(tmp_path):
    from labcore.errors import InputError
    from nlp_poison.config import DefendConfig
    from nlp_poison.defenses import _perplexities

    (tmp_path / "afile").write_text("x")
    for lm in (tmp_path / "missing", tmp_path / "afile", tmp_path):
        with pytest.raises(InputError, match="cannot load causal LM .*drop --lm"):
            _perplexities(["a b c"], DefendConfig(poisons="p", victim="v", lm=str(lm)))



def test_a_classifier_given_as_the_causal_lm_is_refused(tmp_path):
    from labcore.errors import InputError
    from nlp_poison.config import DefendConfig
    from nlp_poison.defenses import _perplexities
    from nlp_poison.victims import default_model

    with pytest.raises(InputError, match=r"holds a BertModel, not a causal LM \(its head would be drawn at random\)"):
        _perplexities(["a b c"], DefendConfig(poisons="p", victim="v", lm=default_model()))
