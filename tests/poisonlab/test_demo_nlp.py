"""The demo's NLP section in numbers and words: the concealed set's curator figures beside the near-spelling
baseline's, its effect beside the clean floor and the random control (hand-built figures, no model)."""

from __future__ import annotations

import pytest

from poisonlab.demo import summary_line
from poisonlab.demo_nlp import _reading, headline


def figures(max_fuzzy: float, fuzzy: int, ranked: int, flagged: int, pool: int = 1088, poisons: int = 64) -> dict:
    """A set's concealment figures as ``nlp_poison.concealment.measure`` writes them (the fields the demo reads)."""
    return {"fuzzy_ratio": {"max": max_fuzzy, "mean": max_fuzzy - 5},
            "detection": {"pool": pool, "poisons": poisons, "inspected": 500, "filters": {
                "fuzzy": {"found_in_first_500": fuzzy},
                "neighbours": {"found_in_first_500": ranked, "flagged_within_k": {"k": 50, "poisons": flagged, "examples": 300}}}}}


SETS = {"concealed": figures(50.04, 24, 64, 0), "random": figures(53.8, 31, 14, 0), "near-spelling": figures(73.08, 64, 64, 64)}
RESULTS = {"clean": {"effectiveness": 0.18, "cacc": 0.82}, "concealed": {"effectiveness": 0.84, "cacc": 0.835},
           "random": {"effectiveness": 0.08, "cacc": 0.825}}


def test_headline_reads_both_rankings_the_plain_filter_and_the_chance_level():
    h = headline(SETS["concealed"])
    assert h == {"max_fuzzy": 50.0, "fuzzy_found": 24, "neighbour_ranked_found": 64, "neighbour_flagged": 0, "poisons": 64,
                 "pool": 1088, "chance_found": pytest.approx(64 * 500 / 1088, abs=0.05)}
    assert headline(figures(40, 0, 0, 0, pool=300, poisons=10))["chance_found"] == 10, "a pool under 500 is read whole"


def test_summary_line_puts_the_concealed_figures_beside_the_near_spelling_baseline_and_the_effect_beside_clean_and_random():
    line = summary_line("nlp", {"effectiveness": {k: v["effectiveness"] for k, v in RESULTS.items()},
                                "concealment": {k: headline(v) for k, v in SETS.items()}})
    assert "clean 0.18, concealed 0.84, random 0.08" in line
    assert "first 500 of 1088" in line and "500 at random: 29.4" in line
    assert "concealed 50 / 24 / 64 / 0" in line and "near-spelling 73 / 64 / 64 / 64" in line


def test_reading_states_the_margins_and_what_each_curator_finds_of_both_sets():
    text = _reading(RESULTS, {k: headline(v) for k, v in SETS.items()}, "quick")
    assert "flips 84 %" in text and "+66 points against the clean floor (18 %)" in text and "+76 against the random control (8 %)" in text
    assert "fuzzy ranking 24 vs 64" in text and "neighbour ranking 64 vs 64" in text and "50-neighbour filter 0 vs 64" in text
    assert "highest fuzzy ratio 50.0 vs 73.1" in text and "finds 29.4" in text and "46 % of it" in text


def test_reading_quotes_the_readmes_quick_seeds_only_at_the_quick_size_and_a_small_pool_as_read_whole():
    heads = {k: headline(v) for k, v in SETS.items()}
    assert "victim seeds 0–4" in _reading(RESULTS, heads, "quick") and "victim seeds 0–4" not in _reading(RESULTS, heads, "tiny")
    small = {k: headline(figures(40, 2, 2, 0, pool=34, poisons=2)) for k in SETS}
    text = _reading(RESULTS, small, "tiny")
    assert "reads the whole pool of 34 examples" in text and "34 is 100 % of it" in text
