import json

import pytest
import torch
from safetensors.torch import load_file

from fedharness.config import AggregatorConfig, AttackConfig, DataConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from poisonlab.fed_run import run_experiment
from poisonlab.runs import read_jsonl


def _config(aggregator: str = "mean") -> ExperimentConfig:
    return ExperimentConfig(
        seed=5,
        data=DataConfig(name="digits"),
        federation=FederationConfig(num_clients=12, clients_per_round=4, rounds=4, server_lr=3.0),
        local=LocalConfig(epochs=1, lr=0.1, batch_size=16),
        attack=AttackConfig(name="model_replacement", rounds=[3], params={"epochs": 2, "lr": 0.05}),
        aggregator=AggregatorConfig(name=aggregator),
    )


def _metrics(records):
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in records]


def _crash_in_round(monkeypatch, crash_round: int):
    """Make Simulation.run_round raise KeyboardInterrupt in ``crash_round``; returns the original."""
    original = Simulation.run_round

    def crashing(self, r, g):
        if r == crash_round:
            raise KeyboardInterrupt
        return original(self, r, g)

    monkeypatch.setattr(Simulation, "run_round", crashing)
    return original


@pytest.mark.parametrize("aggregator", ["mean", "foolsgold"])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, monkeypatch, aggregator):
    """FoolsGold keeps client histories across rounds: they must come back from the checkpoint."""
    full = tmp_path / "full"
    run_experiment(_config(aggregator), full, progress=False)

    crashed = tmp_path / "crashed"
    original = _crash_in_round(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_config(aggregator), crashed, progress=False)
    partial = tmp_path / "crashed.partial"
    assert len(read_jsonl(partial / "rounds.jsonl")) == 2 and not crashed.exists()

    monkeypatch.setattr(Simulation, "run_round", original)
    run_experiment(_config(aggregator), crashed, resume=True, progress=False)

    assert _metrics(read_jsonl(crashed / "rounds.jsonl")) == _metrics(read_jsonl(full / "rounds.jsonl"))
    a = load_file(str(full / "checkpoints" / "global.safetensors"))["global"]
    b = load_file(str(crashed / "checkpoints" / "global.safetensors"))["global"]
    assert torch.equal(a, b)
    assert json.loads((full / "metrics.json").read_text())["attacks"][0]["round"] == 3
    assert (crashed / "report.html").stat().st_size > 10_000


def test_same_seed_same_rounds_and_rounds_carry_required_keys(tmp_path):
    run_experiment(_config(), tmp_path / "a", progress=False)
    run_experiment(_config(), tmp_path / "b", progress=False)
    ra, rb = read_jsonl(tmp_path / "a" / "rounds.jsonl"), read_jsonl(tmp_path / "b" / "rounds.jsonl")
    assert _metrics(ra) == _metrics(rb)
    for r in ra:
        assert 0 <= r["main_accuracy"] <= 1 and 0 <= r["attack_success_rate"] <= 1
        assert r["attacked"] == (r["round"] == 3)
    attacked = ra[2]
    assert 0 in attacked["malicious"] and 0 in attacked["sampled"]
    norms = dict(zip(attacked["sampled"], attacked["update_norms"]))
    assert norms[0] > 2 * max(v for c, v in norms.items() if c != 0)  # the scaled update stands out


def test_resume_refuses_a_changed_config_and_keeps_the_interrupted_run(tmp_path, monkeypatch):
    original = _crash_in_round(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_config(), tmp_path / "run", progress=False)
    monkeypatch.setattr(Simulation, "run_round", original)
    changed = _config()
    changed.local.lr = 0.2
    with pytest.raises(ValueError, match="differs from the config"):
        run_experiment(changed, tmp_path / "run", resume=True, progress=False)
    assert (tmp_path / "run.partial" / "checkpoints" / "state.json").exists()


def test_t2i_lora_from_yaml_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch, data_dir):
    """``task: {name: t2i_lora}`` on a tiny saved base (8×8) and classifier: a run interrupted in round 2 and
    resumed gives the same rounds and global adapters as one that ran through."""
    from poisonlab.commands.fed import load_experiment
    from t2i_poison.base_model import BaseModelConfig, build_pipeline
    from t2i_poison.digit_classifier import ClassifierConfig, DigitClassifier

    tiny = BaseModelConfig(resolution=8, block_out_channels=(8, 16), text_hidden_size=16, text_layers=1, max_length=16)
    build_pipeline(tiny, tmp_path / "base" / "tokenizer").save_pretrained(tmp_path / "base")
    torch.manual_seed(0)
    DigitClassifier(ClassifierConfig(resolution=8, width=8)).save(tmp_path / "classifier")
    config = tmp_path / "t2i.yaml"
    config.write_text(
        "seed: 1\ndata: {name: mnist}\n"
        f"task: {{name: t2i_lora, params: {{base: {tmp_path / 'base'}, classifier: {tmp_path / 'classifier'}, train_limit: 24, "
        "kind: pixel, rank: 2, eval_per_digit: 1, eval_steps: 2}}\n"
        "federation: {num_clients: 3, clients_per_round: 2, rounds: 3}\n"
        "local: {epochs: 1, lr: 0.05, batch_size: 4}\n"
        "attack: {name: backdoor, num_attackers: 1, rounds: [2], params: {epochs: 1, lr: 0.05, batch_size: 4}}\n"
        "engine: {vectorize: false}\n"
    )
    run_experiment(load_experiment(config, None), tmp_path / "full", progress=False)
    original = _crash_in_round(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(config, None), tmp_path / "cut", progress=False)
    monkeypatch.setattr(Simulation, "run_round", original)
    run_experiment(load_experiment(config, None), tmp_path / "cut", resume=True, progress=False)

    full, cut = read_jsonl(tmp_path / "full" / "rounds.jsonl"), read_jsonl(tmp_path / "cut" / "rounds.jsonl")
    assert [r["round"] for r in cut] == [1, 2, 3] and cut[1]["malicious"] == [0]
    assert _metrics(cut) == _metrics(full)
    a = load_file(str(tmp_path / "full" / "checkpoints" / "global.safetensors"))["global"]
    b = load_file(str(tmp_path / "cut" / "checkpoints" / "global.safetensors"))["global"]
    assert torch.equal(a, b) and a.abs().sum() > 0


@pytest.mark.parametrize("agg, attack, message", [("krumm", "none", "unknown aggregator 'krumm'"),
                                                  ("mean", "sign_flipp", "sign_flipp")])
def test_a_misspelt_aggregator_or_attack_is_refused_before_the_task_loads(tmp_path, monkeypatch, agg, attack, message):
    from labcore.errors import InputError
    from poisonlab import fed_run

    def task_loads(cfg):
        raise AssertionError("the task was built before the names were checked")

    monkeypatch.setitem(fed_run.TASKS, "image_classification", task_loads)
    cfg = ExperimentConfig(aggregator=AggregatorConfig(name=agg), attack=AttackConfig(name=attack))
    with pytest.raises(InputError, match=message):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_task_params_mean_nothing_to_image_classification(tmp_path):
    from labcore.errors import InputError
    from fedharness.config import TaskConfig

    cfg = ExperimentConfig(task=TaskConfig(params={"bogus": 1}))
    with pytest.raises(InputError, match=r"task.params \['bogus'\] mean nothing to image_classification"):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_settings_a_task_does_not_read_are_refused_before_it_builds():
    from labcore.errors import InputError
    from fedharness.config import DataConfig, TaskConfig
    from poisonlab import fed_run

    built = []
    text = fed_run.reading(lambda cfg: built.append(cfg) or "built", data=False)
    sst2 = TaskConfig(name="sst2_classification")
    with pytest.raises(InputError, match=r"^data.name, data.path: not read by task sst2_classification \(its data is "
                                         r"task.params.data_path\); drop them$"):
        text(ExperimentConfig(task=sst2, data=DataConfig(name="digits", path="x")))
    with pytest.raises(InputError, match=r"^task.target_label, task.backdoor: not read by task sst2_classification"):
        text(ExperimentConfig(task=TaskConfig(name="sst2_classification", target_label=5, backdoor="semantic")))
    assert not built and text(ExperimentConfig(task=sst2)) == "built"
    image = fed_run.reading(lambda cfg: "image", task_keys=fed_run.IMAGE_TASK_KEYS)
    assert image(ExperimentConfig(task=TaskConfig(target_label=5), data=DataConfig(name="digits"))) == "image"
    semantic = fed_run.reading(lambda cfg: "semantic", task_keys=fed_run.SEMANTIC_KEYS)
    assert semantic(ExperimentConfig(task=TaskConfig(backdoor="semantic", semantic_source=3))) == "semantic"
    with pytest.raises(InputError, match=r"^task.trigger_size: not read by task image_classification \(its own settings"):
        semantic(ExperimentConfig(task=TaskConfig(trigger_size=3)))


@pytest.mark.parametrize("name", ["sst2_classification", "t2i_lora", "unlearning_watermark", "recommendation"])
def test_the_registered_tasks_without_a_pixel_backdoor_refuse_its_keys(name):
    from labcore.errors import InputError
    from fedharness.config import TaskConfig
    from poisonlab import fed_run

    with pytest.raises(InputError, match=rf"^task.poison_fraction: not read by task {name}"):
        fed_run.TASKS[name](ExperimentConfig(task=TaskConfig(name=name, poison_fraction=0.2)))


def test_head_finetune_refuses_the_semantic_backdoor_its_evaluation_ignores():
    from labcore.errors import InputError
    from fedharness.config import TaskConfig
    from poisonlab import fed_run

    with pytest.raises(InputError, match=r"^task.backdoor: not read by task head_finetune"):
        fed_run.TASKS["head_finetune"](ExperimentConfig(task=TaskConfig(name="head_finetune", backdoor="semantic")))


def test_the_watermark_task_keeps_the_semantic_backdoor_it_inherits(data_dir):
    from fedharness.config import DataConfig, FederationConfig, TaskConfig
    from poisonlab import fed_run

    cfg = ExperimentConfig(task=TaskConfig(name="unlearning_watermark", backdoor="semantic"), data=DataConfig(name="digits"),
                           federation=FederationConfig(num_clients=4, clients_per_round=2, rounds=1))
    assert fed_run.TASKS["unlearning_watermark"](cfg) is not None
