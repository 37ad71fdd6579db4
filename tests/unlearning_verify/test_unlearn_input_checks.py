"""Bad input to ``unlearning_verify`` and ``poisonlab unlearn``: refused before any work with a one-line
``InputError`` naming the setting and the fix (exit code 2 on the CLI, nothing left in ``--out``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labcore.errors import InputError
from poisonlab.cli import main
from poisonlab.unlearn_http import ClientConfig
from unlearning_verify import providers
from unlearning_verify.bench import BenchConfig
from unlearning_verify.bench_federated import FederatedBenchConfig
from unlearning_verify.marking import check_owners, max_owners
from unlearning_verify.training import TrainConfig


@pytest.mark.parametrize("name, params, message", [
    ("sisa", {"shards": "abc"}, "parameter shards must be an integer"),
    ("sisa", {"shards": ""}, "parameter shards must be an integer"),
    ("sisa", {"shards": 0}, "parameter shards must be an integer ≥ 1"),
    ("sisa", {"slices": 0}, "parameter slices must be an integer ≥ 1"),
    ("sisa", {"bogus": 1}, "sisa has no parameter 'bogus'; its parameters: shards, slices"),
    ("noop", {"name": "x"}, "noop has no parameter 'name'"),
    ("finetune", {"epochs": 2.5}, "parameter epochs must be an integer"),
    ("finetune", {"epochs": 0}, "parameter epochs must be an integer ≥ 1"),
    ("finetune", {"lr": float("nan")}, "parameter lr must be a finite number > 0"),
    ("finetune", {"lr": "fast"}, "parameter lr must be a number"),
    ("trigger_unlearning", {"lr": 0}, "parameter lr must be a finite number > 0"),
    ("gradient_ascent", {"ascent_epochs": 0}, "parameter ascent_epochs must be an integer ≥ 1"),
    ("gradient_ascent", {"repair_epochs": -1}, "parameter repair_epochs must be an integer ≥ 0"),
    ("gradient_ascent", {"repair_lr": float("inf")}, "parameter repair_lr must be a finite number > 0"),
    ("head_retrain", {"steps": 0}, "parameter steps must be an integer ≥ 1"),
    ("head_retrain", {"l2": -1.0}, "parameter l2 must be a finite number ≥ 0"),
    ("input_transform", {"kind": "foo"}, "parameter kind must be one of quantise, jpeg, blur, median"),
    ("input_transform", {"bits": 9}, "parameter bits must be an integer in 1..8"),
    ("purify_jpeg", {"quality": 0}, "parameter quality must be an integer in 1..100"),
    ("purify_jpeg", {"kind": "blur"}, "purify_jpeg has no parameter 'kind'"),
    ("purify_blur", {"sigma": 0}, "parameter sigma must be a finite number > 0"),
    ("partial", {"keep": 1.5}, "parameter keep must be a fraction in [0, 1]"),
    ("query_detection", {"response": "loud"}, "parameter response must be one of purified, random"),
    ("scrubbing", {"n_components": 0}, "parameter n_components must be an integer ≥ 1"),
    ("forgery", {"candidates": 0}, "parameter candidates must be an integer ≥ 1"),
    ("stale", {"epoch": True}, "parameter epoch must be an integer"),
])
def test_provider_parameters_are_typed_and_range_checked(name, params, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        providers.get(name, **params)


def test_provider_parameters_parse_to_the_field_type():
    sisa = providers.get("sisa", shards="3", slices=" 2 ")
    assert (sisa.shards, sisa.slices) == (3, 2)
    finetune = providers.get("finetune", lr=1)
    assert finetune.lr == 1.0 and isinstance(finetune.lr, float)
    assert providers.get("purify_blur", sigma="1.5").sigma == 1.5


def test_stale_and_forgery_refuse_what_the_data_cannot_give():
    with pytest.raises(InputError, match="epoch -2 indexes none of the model's 1 per-epoch checkpoints"):
        providers.get("stale").check_checkpoints(1)
    with pytest.raises(InputError, match="candidates must be at most the 18 retained samples, got 50"):
        providers.get("forgery").check_retained(18)


@pytest.mark.parametrize("changes, message", [
    ({"num_owners": 1}, "--owners must be ≥ 2"),
    ({"num_owners": 0}, "--owner must lie in 0..owners"),
    ({"train": TrainConfig(epochs=0)}, "--epochs must be ≥ 1"),
    ({"train": TrainConfig(epochs=1), "behaviours": ["stale"]}, "indexes none of the model's 1 per-epoch checkpoints"),
    ({"train_samples": 0}, "--train-samples must be ≥ 1"),
    ({"train_samples": -1}, "--train-samples must be ≥ 1"),
    ({"rate": 0.0}, r"--rate must lie in \(0, 1\]"),
    ({"seeds": []}, "--seeds must be ≥ 1"),
    ({"families": []}, "--families: empty"),
    ({"families": ["lsb", "lsb"]}, "--families: a name given twice"),
    ({"families": ["bogus"]}, "--families: unknown 'bogus'"),
    ({"behaviours": ["noop", "noop"]}, "--behaviours: a name given twice"),
    ({"behaviours": []}, "--behaviours: empty"),
    ({"behaviours": ["sisa"], "provider_params": {"sisa": {"shards": 0}}}, "parameter shards must be an integer ≥ 1"),
])
def test_bench_config_refuses_before_any_work(changes, message):
    with pytest.raises(InputError, match=message):
        BenchConfig(**{"seeds": [0], **changes}).validate()


def test_bench_checks_the_training_set_size():
    with pytest.raises(InputError, match="5 training samples are too few for 10 owners.*use --train-samples ≥ 20"):
        BenchConfig(train_samples=5).check_data(1437)
    with pytest.raises(InputError, match="use --owners ≤ 15"):
        BenchConfig(num_owners=20).check_data(30)
    with pytest.raises(InputError, match="candidates must be at most the 18 retained samples"):
        BenchConfig(train_samples=20, behaviours=["forgery"]).check_data(1437)
    BenchConfig(train_samples=20, behaviours=["noop"]).check_data(1437)


@pytest.mark.parametrize("changes, message", [
    ({"passive_rounds": [3, 3]}, "--passive-rounds lists a number twice"),
    ({"train_samples": -1}, "--train-samples must be ≥ 1"),
    ({"train_samples": 0}, "--train-samples must be ≥ 1"),
    ({"passive_rounds": [100_000]}, "--rounds plus the largest of --passive-rounds"),
])
def test_federated_bench_config_refuses(changes, message):
    with pytest.raises(InputError, match=message):
        FederatedBenchConfig(**changes).validate()


def test_passive_rounds_beyond_the_training_rounds_are_further_rounds():
    """R counts rounds after the federation's own, so R > --rounds is a valid setting."""
    FederatedBenchConfig(rounds=2, passive_rounds=[5]).validate()


def test_too_many_owners_names_the_maximum():
    assert max_owners(1437, 0.5) == 718 and max_owners(1437, 1.0) == 1437 and max_owners(10, 0.3) == 5
    with pytest.raises(InputError, match="--clients 100000 is too many for 1437 training samples.*--clients ≤ 718"):
        check_owners(1437, 100000, 0.5, "--clients")
    check_owners(1437, 718, 0.5)


@pytest.mark.parametrize("changes, message", [
    ({"budget": 0}, "--budget must be ≥ 1"),
    ({"timeout": -1.0}, "--timeout must be a finite number of seconds > 0"),
    ({"timeout": float("nan")}, "--timeout must be a finite number"),
    ({"retries": -1}, "--retries must be ≥ 0"),
    ({"rate_limit": -1.0}, "--rate-limit must be a finite number"),
])
def test_client_config_is_checked(changes, message):
    with pytest.raises(InputError, match=message):
        ClientConfig(**changes).validate()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir) -> Path:
    """A marked digits set and a one-epoch model (the cheap inputs of delete and verify)."""
    folder = tmp_path_factory.mktemp("unlearn-inputs")
    mp = pytest.MonkeyPatch()
    try:
        for args in (["unlearn", "mark", "--data", "digits", "--owner", "0", "--key-file", folder / "k.json",
                      "--out", folder / "marked"],
                     ["unlearn", "train", "--dataset", folder / "marked", "--epochs", "1", "--out", folder / "model"]):
            mp.setattr(sys, "argv", ["poisonlab", *map(str, args)])
            main()
    finally:
        mp.undo()
    return folder


def delete(i: Path) -> list:
    return ["unlearn", "delete", "--model", i / "model", "--dataset", i / "marked", "--owner", "0"]


BENCH = ["unlearn", "bench", "--data", "digits", "--seeds", "1"]
BENCH_FED = ["unlearn", "bench-fed", "--data", "digits", "--seeds", "1"]


@pytest.mark.parametrize("args, message", [
    (lambda i: [*delete(i), "--behaviour", "sisa", "--param", "shards=abc"], "parameter shards must be an integer"),
    (lambda i: [*delete(i), "--behaviour", "sisa", "--param", "shards=0"], "parameter shards must be an integer ≥ 1"),
    (lambda i: [*delete(i), "--behaviour", "sisa", "--param", "shards="], "parameter shards must be an integer"),
    (lambda i: [*delete(i), "--behaviour", "noop", "--epochs", "3", "--lr", "0.5"],
     "behaviour noop trains no model, so --epochs, --lr would be ignored; drop them"),
    (lambda i: [*delete(i), "--behaviour", "finetune", "--epochs", "3"],
     "finetune reads only --batch-size of the training options, so --epochs would be ignored"),
    (lambda i: [*delete(i), "--behaviour", "stale"], "epoch -2 indexes none of the model's 1 per-epoch checkpoints"),
    (lambda i: [*delete(i), "--behaviour", "noop", "--param", "name=x"], "behaviour noop has no parameter 'name'"),
    (lambda i: [*BENCH, "--train-samples", "0"], "--train-samples must be ≥ 1"),
    (lambda i: [*BENCH, "--train-samples", "5"], "5 training samples are too few for 10 owners"),
    (lambda i: [*BENCH, "--owners", "1"], "--owners must be ≥ 2"),
    (lambda i: [*BENCH, "--epochs", "0"], "--epochs must be ≥ 1"),
    (lambda i: [*BENCH, "--families", ""], "--families: empty"),
    (lambda i: [*BENCH, "--families", "lsb,lsb"], "--families: a name given twice"),
    (lambda i: [*BENCH, "--behaviours", "forgery", "--train-samples", "20"], "candidates must be at most the 18"),
    (lambda i: [*BENCH_FED, "--train-samples", "-1"], "--train-samples must be ≥ 1"),
    (lambda i: [*BENCH_FED, "--passive-rounds", "3,3"], "--passive-rounds lists a number twice"),
    (lambda i: [*BENCH_FED, "--clients", "100000"], "--clients 100000 is too many for 1437 training samples"),
    (lambda i: ["unlearn", "mark", "--data", "digits", "--owner", "0", "--owners", "100000", "--key-file",
                i / "new.json"], "--owners 100000 is too many for 1437 training samples"),
    (lambda i: ["unlearn", "train", "--dataset", i / "marked", "--batch-size", "0"], "--batch-size ≥ 1"),
    *[(lambda i, o=o, v=v: ["unlearn", "verify", "--model", i / "model", "--key", i / "k.json", "--before", i / "model",
                            "--data", "digits", o, v], m)
      for o, v, m in (("--budget", "0", "--budget must be ≥ 1"), ("--timeout", "-1", "--timeout must be"),
                      ("--rate-limit", "-1", "--rate-limit must be"))],
])
def test_cli_bad_input_is_one_line_exit_2_and_no_output(inputs, cli, tmp_path, args, message):
    out = tmp_path / "o"
    code, captured = cli(*args(inputs), "--out", out)
    err = captured.err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == [] and not (inputs / "new.json").exists()
