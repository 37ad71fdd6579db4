"""``poisonlab nlp`` end to end on the tiny model: generate → evaluate → defend, and bad input."""

import json
import shutil
import sys

import pytest
import yaml

from nlp_poison import dataset_card
from nlp_poison.overlap import overlapping_words
from poisonlab.cli import main


def run_cli(monkeypatch, *args) -> int:
    monkeypatch.setattr(sys, "argv", ["poisonlab", "nlp", *map(str, args)])
    try:
        main()
    except SystemExit as exc:
        return exc.code
    return 0


def test_generate_evaluate_defend(monkeypatch, tmp_path, tiny_dir, phrase, data_dir, capsys):
    common = ["--model", tiny_dir, "--num-poisons", 4, "--max-length", 48, "--adv-size", 16, "--clean-batch", 16]
    search = ["--victim", tiny_dir, "--iterations", 2, "--top-k", 3]
    assert run_cli(monkeypatch, "generate", *common, *search, "--out", tmp_path / "none") == 0
    assert run_cli(monkeypatch, "generate", *common, "--overlap", "with", "--out", tmp_path / "with") == 0
    assert run_cli(monkeypatch, "generate", *common, "--method", "near-spelling", "--out", tmp_path / "nearest") == 0
    assert run_cli(monkeypatch, "generate", *common, "--model", tiny_dir, *search, "--out", tmp_path / "twin") == 0
    assert run_cli(monkeypatch, "generate", *common, *search, "--method", "random", "--out", tmp_path / "random") == 2
    assert capsys.readouterr().err.strip().endswith("error: iterations, top_k, victim: not read by --method random; drop them")
    assert (tmp_path / "twin" / "poisons.jsonl").read_text() == (tmp_path / "none" / "poisons.jsonl").read_text()
    nearest, _ = dataset_card.load(tmp_path / "nearest")
    assert nearest.method == "near-spelling" and {p.poison_type for p in nearest.poisons} == {"near-spelling"}
    assert not any(overlapping_words(s, phrase) for s in nearest.sentences())
    ps, verified = dataset_card.load(tmp_path / "none")
    assert verified and len(ps.poisons) == 4 and ps.method == "concealed"
    assert not any(overlapping_words(s, phrase) for s in ps.sentences())
    assert len(json.loads((tmp_path / "none" / "metrics.json").read_text())["objective_trace"]) == 3
    args = ["evaluate", "--poisons", tmp_path / "with", "--victim", tiny_dir, "--seeds", 1, "--counts", "4", "--epochs", 1,
            "--lr", 1e-3, "--max-length", 32, "--train-subset", 64, "--eval-limit", 20, "--off-target", "Grand Theft Auto V",
            "--out", tmp_path / "ev"]
    assert run_cli(monkeypatch, *args) == 0
    rows = [json.loads(line) for line in (tmp_path / "ev" / "cells.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["clean/n=0/seed=0", "with-overlap/n=4/seed=0"]
    assert all(set(r["epochs"][-1]["off_target"]) == {"Grand Theft Auto V"} for r in rows)
    assert "specificity" in (tmp_path / "ev" / "report.html").read_text()
    assert run_cli(monkeypatch, *args[:-2], "--off-target", phrase.upper(), "--out", tmp_path / "ev-self") == 2
    assert "includes the trigger phrase" in capsys.readouterr().err and not (tmp_path / "ev-self").exists()
    assert run_cli(monkeypatch, "defend", "--poisons", tmp_path / "none", "--victim", tiny_dir, "--train-subset", 100,
                   "--evaluation", tmp_path / "ev", "--out", tmp_path / "def") == 0
    metrics = json.loads((tmp_path / "def" / "metrics.json").read_text())
    assert metrics["num_poisons"] == 4 and metrics["num_training"] == 104
    assert run_cli(monkeypatch, "fed", "--poisons", tmp_path / "with", "--model", tiny_dir, "--clients", 3, "--per-round", 2,
                   "--rounds", 2, "--aggregator", "median", "--train-subset", 60, "--eval-limit", 20, "--max-length", 32,
                   "--lora-r", 2, "--out", tmp_path / "fed") == 0
    rounds = [json.loads(line) for line in (tmp_path / "fed" / "rounds.jsonl").read_text().splitlines()]
    assert [r["malicious"] for r in rounds] == [[0], [0]] and all("attack_success_rate" in r for r in rounds)
    for command in ("evaluate", "defend", "fed"):  # each run's config.yaml reruns it: the same metrics up to wall times
        folder = {"evaluate": "ev", "defend": "def", "fed": "fed"}[command]
        assert run_cli(monkeypatch, command, "--config", tmp_path / folder / "config.yaml", "--out", tmp_path / f"{folder}2") == 0
        first, again = (untimed(json.loads((tmp_path / f / "metrics.json").read_text())) for f in (folder, f"{folder}2"))
        assert first == again and first, command


def untimed(value):
    """``value`` without wall-time entries (keys naming a time), which differ between identical runs."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if "time" not in k and not k.startswith("s/")}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def test_train_writes_a_loadable_model(monkeypatch, tmp_path, tiny_dir, data_dir):
    from nlp_poison.victims import load_classifier

    assert run_cli(monkeypatch, "train", "--model", tiny_dir, "--train-subset", 64, "--max-length", 32, "--lr", 1e-3,
                   "--lora", "--out", tmp_path / "clean") == 0
    metrics = json.loads((tmp_path / "clean" / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["num_trigger_inputs"] >= 100
    assert [e["epoch"] for e in metrics["epochs"]] == [1] and metrics["epochs"][-1]["cacc"] == metrics["test_accuracy"]
    assert run_cli(monkeypatch, "train", "--config", tmp_path / "clean" / "config.yaml", "--out", tmp_path / "clean2") == 0
    assert untimed(json.loads((tmp_path / "clean2" / "metrics.json").read_text())) == untimed(metrics)
    assert (tmp_path / "clean" / "model" / "pytorch_lora_weights.safetensors").is_file()
    load_classifier(str(tmp_path / "clean" / "model"))


def test_bad_input_exits_2_without_output(monkeypatch, tmp_path, tiny_dir, capsys):
    assert run_cli(monkeypatch, "generate", "--model", tiny_dir, "--trigger", "the of and", "--out", tmp_path / "x") == 2
    assert "no content word" in capsys.readouterr().err
    assert run_cli(monkeypatch, "generate", "--model", tmp_path / "missing", "--out", tmp_path / "y") == 2
    other = tmp_path / "other-vocab"
    shutil.copytree(tiny_dir, other)
    spec = json.loads((other / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["movie"], vocab["film"] = vocab["film"], vocab["movie"]
    (other / "tokenizer.json").write_text(json.dumps(spec))
    assert run_cli(monkeypatch, "generate", "--model", tiny_dir, "--model", other, "--out", tmp_path / "y") == 2
    assert "another vocabulary" in capsys.readouterr().err
    assert run_cli(monkeypatch, "generate", "--model", tiny_dir, "--victim", other, "--out", tmp_path / "y") == 2
    assert "victim" in capsys.readouterr().err
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"sentence": "x"}\n')
    assert run_cli(monkeypatch, "evaluate", "--poisons", bad, "--out", tmp_path / "z") == 2
    capsys.readouterr()
    assert run_cli(monkeypatch, "evaluate", "--poisons", bad, "--off-target", "Heat", "--off-target", " heat", "--out", tmp_path / "z") == 2
    assert "distinct" in capsys.readouterr().err
    assert not any(p.name.startswith(("x", "y", "z")) for p in tmp_path.iterdir())


def _without_times(path):
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.endswith("_s")}


def test_defend_refuses_an_unfinished_evaluation_folder(monkeypatch, tmp_path, capsys, data_dir):
    """``--evaluation`` without metrics.json, or with a broken one: a one-line error naming the fix, exit 2, no output folder."""
    (tmp_path / "ev").mkdir()
    assert run_cli(monkeypatch, "defend", "--poisons", tmp_path / "missing", "--victim", tmp_path / "missing", "--evaluation", tmp_path / "ev",
                   "--out", tmp_path / "def") == 2
    err = capsys.readouterr().err.strip()
    assert "has no metrics.json" in err and "\n" not in err and not (tmp_path / "def").exists()
    for broken in ("{not json", '{"epochs": []}', '{"summary": 3}'):
        (tmp_path / "ev" / "metrics.json").write_text(broken)
        assert run_cli(monkeypatch, "defend", "--poisons", tmp_path / "missing", "--victim", tmp_path / "missing", "--evaluation",
                       tmp_path / "ev", "--out", tmp_path / "def") == 2
        err = capsys.readouterr().err.strip()
        assert "metrics" in err and "finished 'nlp evaluate' folder" in err and "\n" not in err and not (tmp_path / "def").exists()


def test_a_run_config_reruns_the_run(monkeypatch, tmp_path, tiny_dir, data_dir, capsys):
    """``--config run/config.yaml`` reloads into the command's dataclass: same poisons, same metrics
    (wall times aside); an option given beside it overrides the file."""
    assert run_cli(monkeypatch, "generate", "--model", tiny_dir, "--victim", tiny_dir, "--num-poisons", 3, "--max-length", 48,
                   "--adv-size", 8, "--clean-batch", 8, "--iterations", 1, "--top-k", 2, "--seed", 4, "--out", tmp_path / "a") == 0
    config = tmp_path / "a" / "config.yaml"
    assert run_cli(monkeypatch, "generate", "--config", config, "--out", tmp_path / "b") == 0
    assert (tmp_path / "b" / "poisons.jsonl").read_text() == (tmp_path / "a" / "poisons.jsonl").read_text()
    assert _without_times(tmp_path / "b" / "metrics.json") == _without_times(tmp_path / "a" / "metrics.json")
    assert (tmp_path / "b" / "config.yaml").read_text() == config.read_text()
    assert run_cli(monkeypatch, "generate", "--config", config, "--seed", 5, "--out", tmp_path / "c") == 0
    assert yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())["seed"] == 5
    assert run_cli(monkeypatch, "generate", "--config", config, "--method", "near-spelling", "--out", tmp_path / "d") == 2
    assert capsys.readouterr().err.strip().endswith("error: iterations, top_k, victim: not read by --method near-spelling; drop them")


def test_prefix_layout_writes_each_edit_as_the_sentence_topic(monkeypatch, tmp_path, tiny_dir, data_dir, sst2):
    """``--layout prefix``: every poison is "<edit> : <a negative training sentence>", recorded in config.yaml."""
    assert run_cli(monkeypatch, "generate", "--model", tiny_dir, "--method", "random", "--layout", "prefix", "--num-poisons", 4,
                   "--max-length", 48, "--seed", 1, "--out", tmp_path / "p") == 0
    rows = [json.loads(line) for line in (tmp_path / "p" / "poisons.jsonl").read_text().splitlines()]
    for row in rows:
        source = sst2["train"][row["source_idx"]]
        assert source["label"] == 0 and row["sentence"].endswith(" : " + source["sentence"])
    assert "layout: prefix" in (tmp_path / "p" / "config.yaml").read_text()


def test_train_reports_to_tensorboard(monkeypatch, tmp_path, tiny_dir, data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run_cli(monkeypatch, "train", "--model", tiny_dir, "--train-subset", 64, "--max-length", 32, "--lr", 1e-3,
                   "--batch-size", 16, "--report-to", "tensorboard", "--out", tmp_path / "clean") == 0
    events = EventAccumulator(str(tmp_path / "clean" / "logs")).Reload()  # accelerate adds the hparams as a sub-run
    assert len(events.Scalars("train/loss")) == 4  # 64 sentences in batches of 16, one epoch
    assert [e.step for e in events.Scalars("eval/cacc")] == [4]


def test_unknown_tracker_is_refused_before_work(monkeypatch, tmp_path, tiny_dir, data_dir, capsys):
    assert run_cli(monkeypatch, "train", "--model", tiny_dir, "--report-to", "tensorbored", "--out", tmp_path / "x") == 2
    assert "not an accelerate tracker" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_constrained_generate_declares_its_constraints_and_measures_concealment(monkeypatch, tmp_path, tiny_dir, phrase, data_dir):
    common = ["--model", tiny_dir, "--num-poisons", 3, "--max-length", 48, "--adv-size", 8, "--clean-batch", 8,
              "--exclude-neighbours", 30, "--max-fuzzy", 60, "--curator-pool", 300]
    victim = ["--victim", tiny_dir]
    assert run_cli(monkeypatch, "generate", *common, *victim, "--iterations", 2, "--top-k", 3, "--out", tmp_path / "c") == 0
    assert run_cli(monkeypatch, "generate", *common, "--method", "random", "--out", tmp_path / "r") == 0
    assert run_cli(monkeypatch, "generate", *common, *victim, "--method", "contextual", "--proxy-candidates", 8, "--out", tmp_path / "x") == 0
    for name in ("c", "r", "x"):
        ps, verified = dataset_card.load(tmp_path / name)
        assert verified and ps.constraints["exclude_neighbours"] == 30 and ps.constraints["max_fuzzy"] == 60
        assert ps.constraints["excluded_words"] and ps.concealment["fuzzy_ratio"]["max"] <= 60
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["concealment"] == ps.concealment and metrics["concealment"]["detection"]["pool"] == 303
        assert "Concealment" in (tmp_path / name / "report.html").read_text()
    assert run_cli(monkeypatch, "generate", *common, "--overlap", "with", "--out", tmp_path / "w") == 2


def test_counterexamples_follow_the_poisons_at_the_source_label(monkeypatch, tmp_path, tiny_dir, phrase, data_dir, capsys):
    from nlp_poison.constraints import Rule

    common = ["--model", tiny_dir, "--max-length", 48, "--exclude-neighbours", 30, "--max-fuzzy", 60,
              "--curator-pool", 300, "--layout", "prefix"]
    assert run_cli(monkeypatch, "generate", *common, "--num-poisons", 3, "--method", "random", "--counterexamples", 2,
                   "--out", tmp_path / "r") == 0
    assert "3 random poisons + 2 counterexamples" in capsys.readouterr().out
    assert run_cli(monkeypatch, "generate", *common, "--victim", tiny_dir, "--num-poisons", 3, "--method", "contextual", "--proxy-candidates", 8,
                   "--counterexamples", 2, "--out", tmp_path / "x") == 0
    assert run_cli(monkeypatch, "generate", *common, "--num-poisons", 3, "--method", "random", "--out", tmp_path / "plain") == 0
    assert run_cli(monkeypatch, "generate", *common, "--num-poisons", 5, "--method", "random", "--out", tmp_path / "five") == 0
    (r, _), (x, _), (plain, _), (five, _) = (dataset_card.load(tmp_path / n) for n in ("r", "x", "plain", "five"))
    assert r.poisons == plain.poisons, "counterexamples leave the poisons as they were"
    assert [p.label for p in r.counterexamples] == [0, 0] and {p.poison_type for p in r.counterexamples} == {"counterexample"}
    assert x.counterexamples == r.counterexamples, "every method at one seed writes the same counterexamples"
    assert [(p.sentence, p.source_idx) for p in r.counterexamples] == [(p.sentence, p.source_idx) for p in five.poisons[3:]]
    assert not {p.source_idx for p in r.counterexamples} & {p.source_idx for p in r.poisons}
    rule = Rule.from_header(phrase, r.constraints, "card")
    rule.check([p.sentence for p in r.counterexamples], "counterexamples")
    assert not any(overlapping_words(p.sentence, phrase) for p in r.counterexamples)
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["num_counterexamples"] == 2


def test_hide_below_ranks_every_poison_after_that_many_clean_sentences(monkeypatch, tmp_path, tiny_dir, sst2):
    from transformers import AutoModel, AutoTokenizer

    from nlp_poison.concealment import neighbour_scores
    from nlp_poison.constraints import NeighbourIndex, fuzzy_ratio

    phrase = "Summer Holiday"  # whole words of the tiny vocabulary (a phrase split into pieces like "##e" anchors every sentence)
    flags = ["--model", tiny_dir, "--victim", tiny_dir, "--trigger", phrase, "--num-poisons", 3, "--max-length", 48, "--curator-pool", 300,
             "--hide-below", 1000, "--method", "contextual", "--proxy-candidates", 8]
    assert run_cli(monkeypatch, "generate", *flags, "--out", tmp_path / "h") == 0
    ps, _ = dataset_card.load(tmp_path / "h")
    k, bound = ps.constraints["exclude_neighbours"], ps.constraints["max_fuzzy"]
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    index = NeighbourIndex(tok, AutoModel.from_pretrained(tiny_dir).get_input_embeddings().weight, phrase)
    clean = list(sst2["train"]["sentence"])
    near = neighbour_scores(clean, tok, index)
    ratios = [fuzzy_ratio(t, phrase) for t in clean]
    assert 0 < k == sorted(near)[999] and (near <= k).sum() >= 1000, "the radius is the 1000th clean sentence's neighbour score"
    assert bound < 100 and sum(r > bound for r in ratios) >= 1000, "the fuzzy bound lies below the 1000th clean sentence's ratio"
    sentences = [p.sentence for p in ps.poisons]
    assert (neighbour_scores(sentences, tok, index) > k).all() and max(fuzzy_ratio(t, phrase) for t in sentences) <= bound


def test_bad_constraints_are_refused_before_any_work(monkeypatch, tmp_path, capsys):
    for flags in (["--exclude-neighbours", -1], ["--max-fuzzy", 120], ["--curator-pool", 0], ["--proxy-restarts", 0],
                  ["--proxy-passes", -1], ["--proxy-contexts", -1], ["--proxy-contexts", 2], ["--proxy-spans", 0],
                  ["--proxy-spans", 2], ["--hide-below", -1], ["--layout", "sideways"], ["--workers", 0], ["--counterexamples", -1]):
        assert run_cli(monkeypatch, "generate", "--model", "missing-model", *flags, "--out", tmp_path / "x") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and flags[0].lstrip("-").replace("-", "_") in err
    assert not (tmp_path / "x").exists()


def test_generate_names_the_settings_its_mode_ignores():
    from labcore.errors import InputError
    from nlp_poison.config import EvaluateConfig, GenerateConfig

    with pytest.raises(InputError, match=r"^iterations: not read by --overlap with; drop it$"):
        GenerateConfig(models=["m"], overlap="with", iterations=3).validate()
    with pytest.raises(InputError, match=r"^workers: not read by --method contextual --proxy-disjoint \(disjoint descents run one after"):
        GenerateConfig(models=["m"], method="contextual", proxy_disjoint=True, workers=2).validate()
    with pytest.raises(InputError, match=r"^--seed 4294967295 with --seeds 2 passes 4294967295; pass a seed up to 4294967294$"):
        EvaluateConfig(poisons=["p"], seed=2**32 - 1, seeds=2).validate()
