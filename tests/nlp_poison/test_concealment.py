"""Concealment figures on a hand-built vocabulary whose embedding neighbours are known by construction."""

import math

import numpy as np
import pytest
import torch
from rapidfuzz import fuzz
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from labcore.errors import InputError
from nlp_poison.concealment import _order, curator_bounds, detection, measure, neighbour_scores, similarity
from nlp_poison.constraints import NeighbourIndex, constrain, fuzzy_ratio
from nlp_poison.poison_set import Poison

PHRASE = "James Bond"
# token → angle (degrees) of its 2-d input embedding; the specials sit far from everything
ANGLES = {"[PAD]": 300, "[UNK]": 300, "[CLS]": 300, "[SEP]": 300, "[MASK]": 300, "james": 90, "bond": 0, "bonds": 10,
          "##bonds": 12, "jim": 85, "glue": 30, "cat": 120, "dog": 140, "the": 195, "is": 205, "bad": 225, "a": 235, "film": 245}
# ranks by angular distance, nearest first (the anchors and their variants: 0)
RANKS = {
    "bond": ["bonds", "##bonds", "glue", "jim", "film", "cat", "a", "bad", "dog", "is", "the"],
    "james": ["jim", "cat", "dog", "glue", "##bonds", "bonds", "the", "is", "bad", "a", "film"],
}


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hand_vocab")
    (folder / "vocab.txt").write_text("\n".join(ANGLES) + "\n")
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    rad = torch.tensor([math.radians(a) for a in ANGLES.values()])
    emb = torch.stack([rad.cos(), rad.sin()], dim=1)
    return tok, emb, NeighbourIndex(tok, emb, PHRASE)


def test_ranks_follow_the_embedding_geometry(hand):
    tok, _, index = hand
    assert sorted(index.labels) == ["bond", "james"]
    for a, label in enumerate(index.labels):
        ranks = {t: int(index.ranks[a, tok.convert_tokens_to_ids(t)]) for t in RANKS[label]}
        assert ranks == {t: r for r, t in enumerate(RANKS[label], 1)}
        assert int(index.ranks[a, tok.convert_tokens_to_ids("james")]) == 0 == int(index.ranks[a, tok.convert_tokens_to_ids("bond")])
        assert int(index.ranks[a, tok.cls_token_id]) == len(ANGLES)


def test_excluded_neighbours_carry_their_word_piece_variants(hand):
    tok, _, index = hand
    rule, excluded = constrain(index, PHRASE, 1, 60.0)
    assert {tok.convert_ids_to_tokens(i) for i in excluded} == {"james", "bond", "bonds", "##bonds", "jim"}
    assert rule.excluded_words == {"james", "bond", "bonds", "jim"}
    assert not rule.allows("the jim is bad") and rule.allows("the glue is bad")


def test_similarity_figures(hand):
    tok, _, index = hand
    poisons = [Poison("jim dog is bad", 1, "no-overlap", 0, [1, 2]), Poison("cat film is glue", 1, "no-overlap", 1, [1, 2])]
    fig = similarity(poisons, PHRASE, tok, index)
    # edited: james ← jim (1); bond ← jim (4), film (5). Any token: bond ← the unedited "glue" (3)
    assert fig["embedding_rank"] == {"james": {"edited": 1, "any_token": 1}, "bond": {"edited": 4, "any_token": 3}}
    ratios = [fuzz.partial_ratio(PHRASE.lower(), p.sentence) for p in poisons]
    assert fig["fuzzy_ratio"]["max"] == pytest.approx(max(ratios)) and fig["fuzzy_ratio"]["mean"] == pytest.approx(np.mean(ratios))


def test_neighbour_filter_and_found_vs_inspected(hand):
    tok, _, index = hand
    # best rank over tokens and anchors: the film is bad → film (bond, 5); jim dog → jim (1); a cat → cat (james, 2)
    assert neighbour_scores(["the film is bad", "jim dog", "a cat"], tok, index).tolist() == [5, 1, 2]
    # inspected in the order 3 (poison), 0, 4 (poison), 1, 2
    found = detection({"f": np.array([3, 0, 4, 1, 2])}, np.array([False, False, False, True, True]), inspected=2)["f"]
    assert found == {"found_in_first_2": 1, "found_fraction_first_2": 0.5, "inspected_for_50pct": 1, "inspected_for_100pct": 3}


def test_measure_ranks_a_near_spelling_poison_first_by_fuzzy_search(hand, monkeypatch):
    from nlp_poison import concealment

    monkeypatch.setattr(concealment, "CURATOR_K", 1)
    tok, emb, index = hand
    torch.manual_seed(0)
    encoder = BertForSequenceClassification(BertConfig(vocab_size=len(ANGLES), hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                                       intermediate_size=8, max_position_embeddings=32))
    clean = ["the film is bad", "a cat is bad", "the dog is a film", "the glue is bad", "a film"]
    poisons = [Poison("jame bonds is bad", 1, "no-overlap", 0, [1, 2]), Poison("cat dog is bad", 1, "no-overlap", 1, [1, 2])]
    fig = measure(poisons, PHRASE, tok, index, encoder, clean, ["james bond is bad"], 16, seed=0, inspected=1)
    det = fig["detection"]
    assert det["pool"] == 7 and det["poisons"] == 2
    assert set(det["filters"]) == {"fuzzy", "neighbours", "perplexity", "embedding distance"}
    assert det["filters"]["fuzzy"]["found_in_first_1"] == 1 and det["filters"]["neighbours"]["found_in_first_1"] == 1
    # within the 1 nearest: only "bonds" (rank 1 to bond) of the first poison; "jame" is [UNK], cat ranks 2
    assert det["filters"]["neighbours"]["flagged_within_k"] == {"k": 1, "examples": 1, "poisons": 1}
    assert fig["fuzzy_ratio"]["max"] > 85


def test_curator_bounds_put_a_poison_within_them_after_the_first_clean_sentences(hand):
    tok, _, index = hand
    # neighbour scores 1, 2, 3, 5, 8, 1 (jim; cat; dog; film; bad; bonds and jim); fuzzy ratios to "james bond" differ
    clean = ["jim dog", "a cat", "the dog is", "the film is bad", "is bad", "the bonds of jim"]
    k, bound = curator_bounds(clean, PHRASE, tok, index, 3)
    near = neighbour_scores(clean, tok, index)
    ratios = np.array([fuzzy_ratio(t, PHRASE) for t in clean])
    assert k == sorted(near)[2] == 2
    level = sorted(ratios, reverse=True)[2]
    assert bound < level and bound >= ratios[ratios < level].max() - 0.1
    # every clean sentence that passes the bounds, added as a poison, ranks after the first 3 clean ones in both rankings
    poisons = [t for t, n, r in zip(clean, near, ratios) if n > k and r <= bound]
    assert poisons
    texts = clean + poisons
    is_poison = np.arange(len(texts)) >= len(clean)
    fuzzy_order = _order(-np.array([fuzzy_ratio(t, PHRASE) for t in texts]), seed=0)
    near_order = _order(neighbour_scores(texts, tok, index), seed=0)
    found = detection({"fuzzy": fuzzy_order, "neighbours": near_order}, is_poison, inspected=3)
    assert found["fuzzy"]["found_in_first_3"] == 0 == found["neighbours"]["found_in_first_3"]
    with pytest.raises(InputError, match="hide_below"):
        curator_bounds(clean, PHRASE, tok, index, len(clean) + 1)
