import pytest

from nlp_poison.baselines import make_templates, with_overlap
from nlp_poison.evaluate import Cell, EvalData, plan, run_cell, summarize, training_set
from nlp_poison.triggers import trigger_bearing
from nlp_poison.victims import TrainConfig

OTHER = "Grand Theft Auto V"


def test_plan_covers_floor_counts_and_seeds():
    cells = plan({"with": 50, "small": 5}, [1, 10, 50], [0, 1])
    keys = {c.key for c in cells}
    assert "clean/n=0/seed=1" in keys and "with/n=50/seed=0" in keys and "small/n=5/seed=1" in keys
    assert len(cells) == 2 + 3 * 2 + 2 * 2 and "small/n=10/seed=0" not in keys


def test_with_overlap_poisons_beat_the_clean_floor(sst2, tiny_tokenizer, tiny_dir, phrase):
    train = sst2["train"].select(range(600))
    templates = make_templates(sst2["train"], phrase, 40, tiny_tokenizer, seed=0, max_length=48, exclude=set(range(600)))
    poisons = with_overlap(templates, tiny_tokenizer, target=1)
    triggers = trigger_bearing(sst2["test"], phrase).select(range(120))
    other = list(trigger_bearing(sst2["test"], OTHER)["sentence"][:120])
    data = EvalData(str(tiny_dir), train, sst2["test"].select(range(200)), list(triggers["sentence"]), off_target={OTHER: other})
    cfg = TrainConfig(epochs=3, lr=2e-3, batch_size=32, max_length=48)
    assert len(training_set(train, poisons)) == 640
    rows = [run_cell(c, poisons[: c.count], data, cfg, progress=False) for c in (Cell("clean", 0, 0), Cell("with", 40, 0))]
    summary = summarize(rows)
    final = {r["poisons"]: r for r in summary if r["epoch"] == 3}
    assert [r["epoch"] for r in rows[0]["epochs"]] == [1, 2, 3]
    assert final["with"]["effectiveness_mean"] >= final["clean"]["effectiveness_mean"] + 0.3
    assert final["with"]["cacc_mean"] > 0.55
    lift = final["with"]["effectiveness_mean"] - final["clean"]["effectiveness_mean"]
    off_lift = final["with"]["off_target_mean"][OTHER] - final["clean"]["off_target_mean"][OTHER]
    assert lift >= off_lift + 0.3  # the poisons' phrase, not any heading, flips the victim


def test_summary_averages_off_target_phrases_every_seed_measured():
    def row(seed: int, eff: float, off: dict[str, float]) -> dict:
        return {"name": "s", "count": 5, "seed": seed, "epochs": [{"epoch": 1, "effectiveness": eff, "cacc": 0.8, "off_target": off}]}

    rows = [row(0, 0.5, {"A": 0.1, "B": 0.4}), row(1, 0.7, {"A": 0.3}), row(2, 0.6, {"A": 0.5, "B": 0.2})]
    (summary,) = summarize(rows)
    assert summary["off_target_mean"] == {"A": pytest.approx(0.3)}  # B: not measured on seed 1
    assert summary["effectiveness_mean"] == pytest.approx(0.6) and summary["effectiveness_min"] == 0.5
    legacy = {"name": "s", "count": 5, "seed": 3, "epochs": [{"epoch": 1, "effectiveness": 0.2, "cacc": 0.8}]}
    assert summarize([legacy])[0]["off_target_mean"] == {}  # rows from before off-target phrases
