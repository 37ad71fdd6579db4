"""Bad settings refused with an InputError naming the key and the fix: config validation, the registered
attacks' and aggregators' parameters, the Dirichlet split and damaged checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fedharness import aggregators, attacks, checkpoint
from fedharness.config import AttackConfig, EngineConfig, ExperimentConfig, FederationConfig, LocalConfig, TaskConfig
from fedharness.experiment import run_rounds
from fedharness.partition import dirichlet
from fedharness.tasks.image_classification import SemanticFeature
from labcore.errors import InputError

NAN, INF = math.nan, math.inf
FED = {"num_clients": 4, "clients_per_round": 2, "rounds": 2}


def _config(**sections: object) -> ExperimentConfig:
    return ExperimentConfig(**{"federation": FederationConfig(**FED), **sections})


@pytest.mark.parametrize("sections, message", [
    ({"federation": FederationConfig(num_clients=4, clients_per_round=0)},
     r"federation.clients_per_round \(m=0\) must be between 1 and federation.num_clients \(n=4\)"),
    ({"task": TaskConfig(trigger_size=-3)}, r"task.trigger_size \(-3\) must be >= 1"),
    ({"task": TaskConfig(trigger_size=0)}, r"task.trigger_size \(0\) must be >= 1"),
    ({"task": TaskConfig(poison_fraction=NAN)}, r"task.poison_fraction \(nan\) must be in \(0, 1\]"),
    ({"task": TaskConfig(poison_fraction=1.5)}, r"task.poison_fraction \(1.5\) must be in \(0, 1\]"),
    ({"task": TaskConfig(poison_fraction=-0.5)}, r"task.poison_fraction \(-0.5\) must be in \(0, 1\]"),
    ({"task": TaskConfig(semantic_source=-1)}, r"task.semantic_source must be a class index >= 0"),
    ({"federation": FederationConfig(**FED, partition="dirichlet", dirichlet_alpha=0)},
     r"federation.dirichlet_alpha \(0\) must be a finite number > 0"),
    ({"federation": FederationConfig(**FED, partition="dirichlet", dirichlet_alpha=NAN)},
     r"federation.dirichlet_alpha \(nan\) must be a finite number > 0"),
    ({"local": LocalConfig(lr=INF)}, r"local.lr \(inf\) must be a finite number > 0"),
    ({"local": LocalConfig(lr=NAN)}, r"local.lr \(nan\) must be a finite number > 0"),
    ({"local": LocalConfig(epochs=1_000_000_000)}, r"local.epochs \(1000000000\) must be at most 10000; lower it"),
    ({"federation": FederationConfig(**FED, server_lr=INF)}, r"federation.server_lr \(inf\) must be a finite number > 0"),
    ({"federation": FederationConfig(**FED, server_lr=0.0)}, r"federation.server_lr \(0.0\) must be a finite number > 0"),
    ({"engine": EngineConfig(chunk_size=0)}, r"engine.chunk_size must be >= 1"),
    ({"attack": AttackConfig(name="backdoor", every=1, start=0)}, r"attack.start \(0\) must lie in 1..2"),
    ({"attack": AttackConfig(name="backdoor", every=1, start=-5)}, r"attack.start \(-5\) must lie in 1..2"),
    ({"attack": AttackConfig(name="backdoor", num_attackers=0, every=1)},
     r"attack.num_attackers is 0, so attack backdoor never runs; set attack.num_attackers >= 1 or attack.name: none"),
])
def test_config_validation_refuses(sections, message):
    with pytest.raises(InputError, match=f"^{message}"):
        _config(**sections).validate()


def test_no_attack_may_have_no_attackers():
    _config(attack=AttackConfig(name="none", num_attackers=0)).validate()


@pytest.mark.parametrize("name, params, message", [
    ("model_replacement", {"epochs": -1}, r"attack model_replacement needs epochs in 1..10000, .* got epochs=-1"),
    ("model_replacement", {"lr": NAN}, r"attack model_replacement needs .* a finite lr > 0, .*lr=nan; fix attack.params"),
    ("model_replacement", {"gamma": -2.0}, r"attack model_replacement needs gamma null or a finite number > 0"),
    ("semantic_backdoor", {"batch_size": 0}, r"attack semantic_backdoor needs .*batch_size=0"),
    ("constrain_scale", {"alpha": 1.5}, r"attack constrain_scale needs alpha in \[0, 1\]"),
    ("dba", {"gamma": INF}, r"attack dba needs parts >= 1 and a finite gamma > 0"),
    ("pgd_backdoor", {"eps": INF}, r"pgd_backdoor needs finite eps > 0 and gamma > 0"),
    ("pgd_backdoor", {"lr": -1.0}, r"attack pgd_backdoor needs .*lr=-1.0"),
    ("neurotoxin", {"gamma": NAN}, r"neurotoxin gamma must be a finite number > 0"),
    ("gaussian", {"sigma": -1.0}, r"attack gaussian needs sigma > 0 \(.inf for non-finite updates\), got -1.0; fix attack"),
    ("gaussian", {"sigma": NAN}, r"attack gaussian needs sigma > 0 .*, got nan"),
    ("ipm", {"eps": NAN}, r"attack ipm needs a finite eps > 0, got nan"),
    ("sign_flip", {"scale": 0.0}, r"attack sign_flip needs a finite scale > 0"),
    ("alie", {"z": INF}, r"attack alie needs z null or a finite number, got inf"),
    ("minmax", {"kind": "bogus"}, r"attack minmax needs kind 'std', 'unit' or 'sign'"),
    ("label_flip", {"source": 3, "target": 3}, r"label_flip needs two different classes >= 0"),
    ("ada", {"lr": INF}, r"ada needs source and target >= 0, .*lr=inf"),
    ("hidden_trigger", {"poisons": 0}, r"hidden_trigger poisons must be >= 1"),
])
def test_attack_parameters_are_range_checked(name, params, message):
    with pytest.raises(InputError, match=message):
        attacks.get(name, **params)


@pytest.mark.parametrize("name, params, message", [
    ("weak_dp", {"sigma": NAN}, r"weak_dp needs a finite rho > 0 and sigma >= 0, got rho=1.0, sigma=nan"),
    ("weak_dp", {"rho": INF}, r"weak_dp needs a finite rho > 0"),
    ("central_dp", {"noise_multiplier": INF}, r"central_dp needs a finite clip > 0 and noise_multiplier >= 0"),
    ("flame", {"noise_lambda": -1.0}, r"flame noise_lambda must be a finite number >= 0, got -1.0"),
    ("foolsgold", {"kappa": NAN}, r"foolsgold kappa must be a finite number > 0, got nan"),
    ("norm_clip", {"rho": INF}, r"norm_clip rho must be a finite number > 0, got inf"),
    ("centered_clip", {"tau": NAN}, r"centered_clip needs a finite tau > 0"),
    ("geometric_median", {"nu": 0.0}, r"geometric_median needs iters >= 1, a finite nu > 0 and tol >= 0"),
    ("validation", {"tolerance": NAN}, r"validation tolerance must be a finite number, got nan"),
    ("bulyan", {"f": -1}, r"bulyan f must be >= 0, got -1"),
])
def test_aggregator_parameters_are_range_checked(name, params, message):
    with pytest.raises(InputError, match=message):
        aggregators.get(name, **params)


@pytest.mark.parametrize("name", ["bucketing", "nnm"])
def test_a_pre_aggregator_is_refused_as_the_aggregator(name):
    with pytest.raises(InputError, match=f"^{name} is a pre-aggregator, not a defense on its own .* aggregator.pre"):
        aggregators.compose(aggregators.get(name))
    aggregators.compose(aggregators.get(name), aggregators.get("median"))


def test_krum_and_bulyan_refuse_more_attackers_than_a_round_allows():
    with pytest.raises(InputError, match=r"^krum with f=5 needs at least 2f \+ 3 = 13 updates per round, got 2; "
                                         r"lower f or raise federation.clients_per_round"):
        aggregators.check_rows(aggregators.get("krum", f=5), 2)
    with pytest.raises(InputError, match=r"^multi_krum cannot select k=9 of the 5 updates"):
        aggregators.check_rows(aggregators.get("multi_krum", f=1, k=9), 5)
    with pytest.raises(InputError, match=r"^bulyan with f=1 needs at least 7 finite updates, got 6"):
        aggregators.check_rows(aggregators.get("bulyan", f=1), 6)
    bucketed = aggregators.compose(aggregators.get("bucketing", s=2), aggregators.get("krum", f=1))
    with pytest.raises(InputError, match=r"got 4"):  # 8 updates make 4 buckets
        aggregators.check_rows(bucketed, 8)
    aggregators.check_rows(aggregators.get("krum", f=1), 5)
    aggregators.check_rows(aggregators.get("median"), 1)


@pytest.mark.parametrize("alpha", [0.0, -1.0, NAN, INF])
def test_dirichlet_refuses_a_non_positive_or_non_finite_alpha(alpha):
    with pytest.raises(ValueError, match="dirichlet alpha must be a finite number > 0"):
        dirichlet(np.arange(20) % 2, 4, alpha, seed=0)


def test_semantic_source_without_training_images_is_an_input_error():
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(InputError, match="^task.semantic_source 7 has no training images; pick a class the data holds"):
        SemanticFeature(source=7).threshold(x, y)


@pytest.mark.parametrize("text, reason", [
    ("garbage", r"JSONDecodeError: Expecting value"),
    ('{"round": "x"}', r"ValueError: round 'x' is not a finished round"),
    ('{"round": 0}', r"ValueError: round 0 is not a finished round"),
    ("[]", r"TypeError"),
    ("{}", r"KeyError"),
])
def test_a_damaged_state_json_names_the_file_and_the_fix(tmp_path, text, reason):
    folder = tmp_path / "run.partial" / "checkpoints"
    checkpoint.save(folder, 1, torch.zeros(3))
    (folder / "state.json").write_text(text)
    with pytest.raises(InputError, match=rf"^checkpoint file {folder / 'state.json'} is damaged \({reason}.*\); "
                                         rf"delete {tmp_path / 'run.partial'} and run again without --resume$"):
        checkpoint.load(folder)


def test_a_damaged_global_safetensors_names_the_file(tmp_path):
    folder = tmp_path / "run.partial" / "checkpoints"
    checkpoint.save(folder, 1, torch.zeros(3))
    (folder / "global.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"global.safetensors is damaged \(SafetensorError"):
        checkpoint.load(folder)


class _Sim:
    """The part of a Simulation that run_rounds reads before its first round."""

    def __init__(self, rounds: int) -> None:
        self.cfg = _config(federation=FederationConfig(num_clients=4, clients_per_round=2, rounds=rounds))
        self.aggregator = aggregators.get("mean")


def test_resume_refuses_a_checkpoint_past_the_configured_rounds(tmp_path):
    checkpoint.save(tmp_path / "checkpoints", 99, torch.zeros(3))
    with pytest.raises(InputError, match=r"^checkpoint .*state.json records round 99, past federation.rounds \(2\); "
                                         r"delete .* and run again without --resume$"):
        run_rounds(_Sim(2), tmp_path, resume=True, progress=False)


def test_resume_refuses_a_damaged_rounds_log(tmp_path):
    checkpoint.save(tmp_path / "checkpoints", 1, torch.zeros(3))
    (tmp_path / "rounds.jsonl").write_text(json.dumps({"round": 1}) + "\nnot json\n")
    with pytest.raises(InputError, match=r"rounds.jsonl is damaged \(JSONDecodeError"):
        run_rounds(_Sim(2), tmp_path, resume=True, progress=False)
