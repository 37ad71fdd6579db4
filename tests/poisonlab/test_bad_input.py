"""Bad input over every subcommand, through the real CLI in-process: each case must exit with code 2,
print exactly one line on stderr, leave no output or ``.partial`` folder, and change no existing file.

The table is the matrix: non-UTF-8 YAML/JSONL/keys, output under an unwritable path or under a file,
non-finite numbers, a patch that isn't an image, truncated or random-bytes safetensors, zero and
negative counts, empty configs, out-of-range values, a folder given as a file, missing files. A case
that starts real work instead of failing is stopped after ``LIMIT_S`` seconds and fails.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest

import poisonlab.cli  # noqa: F401  (sets the CLI's environment before the libraries load)

LIMIT_S = 60  # s: generous for a loaded CI machine; a case that starts real work runs far longer
GOOD_YAML = """seed: 0
data: {name: digits}
federation: {num_clients: 4, clients_per_round: 2, rounds: 1}
local: {epochs: 1, lr: 0.1, batch_size: 32}
"""
GRID_YAML = "base: {{seed: 0, data: {{name: digits}}, federation: {{num_clients: 4, clients_per_round: 2, rounds: 1}}}}\n" \
    "attacks: {{none: {{name: none}}}}\ndefenses: {{fedavg: {{name: mean}}}}\n"
LATIN1 = "# café\nseed: 1\n".encode("latin-1")
POISON_ROW = ('{"sentence": "a dull film", "label": 1, "source_idx": 3, "poison_type": "no-overlap", '
              '"edited_positions": [1], "objective_trace": [0.5]}\n')
OUT_UNDER_FILE = "{i}/afile/run"
UNWRITABLE = "/proc/poisonlab-test/run"

FED = ["fed", "run", "{i}/good.yaml", "--out", "{out}"]
GRID = ["fed", "grid", "{i}/grid.yaml", "--out", "{out}"]
NLP_TRAIN = ["nlp", "train", "--out", "{out}", "--train-subset", "8", "--epochs", "1"]
NLP_GEN = ["nlp", "generate", "--model", "{minilm}", "--out", "{out}"]
NLP_EVAL = ["nlp", "evaluate", "--poisons", "{i}/poisons.jsonl", "--trigger", "James Bond", "--out", "{out}",
            "--train-subset", "8", "--seeds", "1", "--counts", "1"]
NLP_DEFEND = ["nlp", "defend", "--poisons", "{i}/poisons.jsonl", "--trigger", "James Bond", "--victim", "{minilm}",
              "--train-subset", "8", "--out", "{out}"]
NLP_FED = ["nlp", "fed", "--poisons", "{i}/poison-set", "--out", "{out}", "--train-subset", "8"]
PRETRAIN = ["t2i", "pretrain-base", "--out", "{out}", "--steps", "1", "--samples-per-digit", "1"]
MAKE_DATA = ["t2i", "make-data", "--kind", "pixel", "--base", "{i}/base", "--out", "{out}", "--num-images", "4"]
T2I_TRAIN = ["t2i", "train", "--base", "{i}/base", "--data", "{i}/t2i-data", "--out", "{out}", "--steps", "1"]
T2I_EVAL = ["t2i", "evaluate", "--base", "{i}/base", "--lora", "{i}/lora-random", "--out", "{out}",
            "--samples-per-digit", "1", "--inference-steps", "1"]
MARK = ["unlearn", "mark", "--data", "digits", "--owner", "0", "--key-file", "{out}.key", "--out", "{out}"]
UL_TRAIN = ["unlearn", "train", "--dataset", "{i}/adir", "--out", "{out}"]
DELETE = ["unlearn", "delete", "--dataset", "{i}/adir", "--model", "{i}/model", "--owner", "0", "--behaviour",
          "retrain", "--out", "{out}"]
VERIFY = ["unlearn", "verify", "--model", "{i}/model", "--key", "{i}/key.json", "--before", "{i}/model", "--out", "{out}"]
BENCH = ["unlearn", "bench", "--data", "digits", "--seeds", "1", "--out", "{out}"]
BENCH_FED = ["unlearn", "bench-fed", "--data", "digits", "--seeds", "1", "--out", "{out}"]
DEMO = ["demo", "--tiny", "--out", "{out}"]


def opt(base: list[str], option: str, value: str) -> list[str]:
    """``base`` with ``option`` set to ``value`` (replaced if present, else appended)."""
    args = list(base)
    if option in args:
        args[args.index(option) + 1] = value
        return args
    return [*args, option, value]


CASES: dict[str, list[str]] = {
    # fed run
    "fed-run/non-utf8-yaml": ["fed", "run", "{i}/latin1.yaml", "--out", "{out}"],
    "fed-run/seed-negative": opt(FED, "--seed", "-1"),
    "fed-run/empty-yaml": ["fed", "run", "{i}/empty.yaml", "--out", "{out}"],
    "fed-run/yaml-list": ["fed", "run", "{i}/list.yaml", "--out", "{out}"],
    "fed-run/dir-as-config": ["fed", "run", "{i}/adir", "--out", "{out}"],
    "fed-run/missing-config": ["fed", "run", "{i}/nope.yaml", "--out", "{out}"],
    "fed-run/out-under-file": opt(FED, "--out", OUT_UNDER_FILE),
    "fed-run/out-unwritable": opt(FED, "--out", UNWRITABLE),
    "fed-run/out-exists": opt(FED, "--out", "{i}/exists"),
    "fed-run/rounds-1e9": ["fed", "run", "{i}/rounds_huge.yaml", "--out", "{out}"],
    "fed-run/rounds-negative": ["fed", "run", "{i}/rounds_negative.yaml", "--out", "{out}"],
    "fed-run/clients-zero": ["fed", "run", "{i}/clients_zero.yaml", "--out", "{out}"],
    "fed-run/lr-nan-yaml": ["fed", "run", "{i}/lr_nan.yaml", "--out", "{out}"],
    "fed-run/seed-not-int": opt(FED, "--seed", "x"),
    "fed-run/engine-unknown": opt(FED, "--engine", "bogus"),
    "fed-run/resume-nothing": [*FED, "--resume"],
    "fed-run/target-label-on-t2i": ["fed", "run", "{i}/t2i_target.yaml", "--out", "{out}"],
    # fed grid
    "fed-grid/non-utf8-yaml": ["fed", "grid", "{i}/latin1.yaml", "--out", "{out}"],
    "fed-grid/empty-yaml": ["fed", "grid", "{i}/empty.yaml", "--out", "{out}"],
    "fed-grid/yaml-list": ["fed", "grid", "{i}/list.yaml", "--out", "{out}"],
    "fed-grid/dir-as-config": ["fed", "grid", "{i}/adir", "--out", "{out}"],
    "fed-grid/out-under-file": opt(GRID, "--out", OUT_UNDER_FILE),
    "fed-grid/out-unwritable": opt(GRID, "--out", UNWRITABLE),
    # nlp train
    "nlp-train/lr-nan": opt(NLP_TRAIN, "--lr", "nan"),
    "nlp-train/lr-inf": opt(NLP_TRAIN, "--lr", "inf"),
    "nlp-train/epochs-zero": opt(NLP_TRAIN, "--epochs", "0"),
    "nlp-train/max-length-beyond-the-model": opt(NLP_TRAIN, "--max-length", "100000"),
    "nlp-train/batch-size-negative": opt(NLP_TRAIN, "--batch-size", "-1"),
    "nlp-train/max-length-zero": opt(NLP_TRAIN, "--max-length", "0"),
    "nlp-train/train-subset-zero": opt(NLP_TRAIN, "--train-subset", "0"),
    "nlp-train/empty-trigger": opt(NLP_TRAIN, "--trigger", ""),
    "nlp-train/data-path-empty-dir": opt(NLP_TRAIN, "--data-path", "{i}/adir"),
    "nlp-train/data-path-non-utf8": opt(NLP_TRAIN, "--data-path", "{i}/sst2-latin1"),
    "nlp-train/model-empty-dir": opt(NLP_TRAIN, "--model", "{i}/adir"),
    "nlp-train/out-under-file": opt(NLP_TRAIN, "--out", OUT_UNDER_FILE),
    "nlp-train/out-unwritable": opt(NLP_TRAIN, "--out", UNWRITABLE),
    "nlp-train/out-dot": opt(NLP_TRAIN, "--out", "."),
    "nlp-train/seed-negative": opt(NLP_TRAIN, "--seed", "-1"),
    # nlp generate
    "nlp-generate/num-poisons-zero": opt(NLP_GEN, "--num-poisons", "0"),
    "nlp-generate/num-poisons-negative": opt(NLP_GEN, "--num-poisons", "-5"),
    "nlp-generate/iterations-zero": opt(NLP_GEN, "--iterations", "0"),
    "nlp-generate/top-k-zero": opt(NLP_GEN, "--top-k", "0"),
    "nlp-generate/eta-nan": opt(NLP_GEN, "--eta", "nan"),
    "nlp-generate/collision-inf": opt(NLP_GEN, "--collision", "inf"),
    "nlp-generate/adv-size-zero": opt(NLP_GEN, "--adv-size", "0"),
    "nlp-generate/model-is-a-file": opt(NLP_GEN, "--model", "{i}/afile"),
    "nlp-generate/out-under-file": opt(opt(NLP_GEN, "--out", OUT_UNDER_FILE), "--num-poisons", "1"),
    # nlp evaluate
    "nlp-evaluate/non-utf8-jsonl": opt(NLP_EVAL, "--poisons", "{i}/latin1.jsonl"),
    "nlp-evaluate/empty-jsonl": opt(NLP_EVAL, "--poisons", "{i}/empty.jsonl"),
    "nlp-evaluate/bad-json-line": opt(NLP_EVAL, "--poisons", "{i}/list.yaml"),
    "nlp-evaluate/dir-without-poisons": opt(NLP_EVAL, "--poisons", "{i}/adir"),
    "nlp-evaluate/missing-poisons": opt(NLP_EVAL, "--poisons", "{i}/nope.jsonl"),
    "nlp-evaluate/seeds-zero": opt(NLP_EVAL, "--seeds", "0"),
    "nlp-evaluate/counts-zero": opt(NLP_EVAL, "--counts", "0"),
    "nlp-evaluate/counts-not-int": opt(NLP_EVAL, "--counts", "a,b"),
    "nlp-evaluate/counts-above-set": opt(NLP_EVAL, "--counts", "999"),
    "nlp-evaluate/counts-empty-item": opt(NLP_EVAL, "--counts", "1,,2"),
    "nlp-evaluate/counts-repeated": opt(NLP_EVAL, "--counts", "1,1"),
    "nlp-evaluate/lr-nan": opt(NLP_EVAL, "--lr", "nan"),
    "nlp-evaluate/eval-limit-zero": opt(NLP_EVAL, "--eval-limit", "0"),
    "nlp-evaluate/out-under-file": opt(NLP_EVAL, "--out", OUT_UNDER_FILE),
    # nlp defend
    "nlp-defend/non-utf8-jsonl": opt(NLP_DEFEND, "--poisons", "{i}/latin1.jsonl"),
    "nlp-defend/evaluation-without-metrics": opt(NLP_DEFEND, "--evaluation", "{i}/adir"),
    "nlp-defend/max-length-zero": opt(NLP_DEFEND, "--max-length", "0"),
    "nlp-defend/out-under-file": opt(NLP_DEFEND, "--out", OUT_UNDER_FILE),
    # nlp fed
    "nlp-fed/clients-zero": opt(NLP_FED, "--clients", "0"),
    "nlp-fed/data-path-bad-line": opt(NLP_FED, "--data-path", "{i}/reviews-bad.txt"),
    "nlp-fed/more-clients-than-sentences": opt(opt(NLP_FED, "--clients", "10"), "--per-round", "10"),
    "nlp-fed/per-round-above-clients": opt(NLP_FED, "--per-round", "50"),
    "nlp-fed/rounds-1e9": opt(NLP_FED, "--rounds", "1000000000"),
    "nlp-fed/local-lr-nan": opt(NLP_FED, "--local-lr", "nan"),
    "nlp-fed/non-utf8-jsonl": opt(NLP_FED, "--poisons", "{i}/latin1.jsonl"),
    "nlp-fed/mnist-yaml": [*NLP_FED, "--config", "{i}/good.yaml"],
    "nlp-fed/image-task-yaml": [*NLP_FED, "--config", "{i}/image_task.yaml"],
    # t2i pretrain-base
    "t2i-pretrain/steps-zero": opt(PRETRAIN, "--steps", "0"),
    "t2i-pretrain/batch-size-negative": opt(PRETRAIN, "--batch-size", "-3"),
    "t2i-pretrain/lr-nan": opt(PRETRAIN, "--lr", "nan"),
    "t2i-pretrain/samples-per-digit-zero": opt(PRETRAIN, "--samples-per-digit", "0"),
    "t2i-pretrain/threads-zero": opt(PRETRAIN, "--threads", "0"),
    "t2i-pretrain/out-under-file": opt(PRETRAIN, "--out", OUT_UNDER_FILE),
    "t2i-pretrain/out-unwritable": opt(PRETRAIN, "--out", UNWRITABLE),
    # t2i make-data
    "t2i-make-data/kind-unknown": opt(MAKE_DATA, "--kind", "bogus"),
    "t2i-make-data/seed-negative": opt(MAKE_DATA, "--seed", "-1"),
    "t2i-make-data/backdoor-fraction-1.5": opt(MAKE_DATA, "--backdoor-fraction", "1.5"),
    "t2i-make-data/backdoor-fraction-negative": opt(MAKE_DATA, "--backdoor-fraction", "-0.1"),
    "t2i-make-data/backdoor-fraction-nan": opt(MAKE_DATA, "--backdoor-fraction", "nan"),
    "t2i-make-data/patch-not-an-image": opt(MAKE_DATA, "--patch", "{i}/not_image.png"),
    "t2i-make-data/patch-is-a-dir": opt(MAKE_DATA, "--patch", "{i}/adir"),
    "t2i-make-data/num-images-zero": opt(MAKE_DATA, "--num-images", "0"),
    "t2i-make-data/patch-size-zero": opt(MAKE_DATA, "--patch-size", "0"),
    "t2i-make-data/base-empty-dir": opt(MAKE_DATA, "--base", "{i}/adir"),
    "t2i-make-data/images-empty-dir": opt(MAKE_DATA, "--images", "{i}/adir"),
    "t2i-make-data/out-under-file": opt(MAKE_DATA, "--out", OUT_UNDER_FILE),
    "t2i-make-data/object-word-not-a-digit": [*opt(MAKE_DATA, "--kind", "object"), "--source", "dog"],
    # t2i train
    "t2i-train/data-empty-dir": opt(T2I_TRAIN, "--data", "{i}/adir"),
    "t2i-train/lr-nan": opt(T2I_TRAIN, "--lr", "nan"),
    "t2i-train/steps-zero": opt(T2I_TRAIN, "--steps", "0"),
    "t2i-train/lam-1.5": opt(T2I_TRAIN, "--lam", "1.5"),
    "t2i-train/rank-zero": opt(T2I_TRAIN, "--rank", "0"),
    "t2i-train/base-is-a-file": opt(T2I_TRAIN, "--base", "{i}/afile"),
    "t2i-train/out-under-file": opt(T2I_TRAIN, "--out", OUT_UNDER_FILE),
    # t2i evaluate
    "t2i-evaluate/lora-random-bytes": T2I_EVAL,
    "t2i-evaluate/lora-truncated": opt(T2I_EVAL, "--lora", "{i}/lora-truncated"),
    "t2i-evaluate/lora-empty-dir": opt(T2I_EVAL, "--lora", "{i}/adir"),
    "t2i-evaluate/samples-per-digit-zero": opt(T2I_EVAL, "--samples-per-digit", "0"),
    "t2i-evaluate/inference-steps-zero": opt(T2I_EVAL, "--inference-steps", "0"),
    "t2i-evaluate/guidance-nan": opt(T2I_EVAL, "--guidance", "nan"),
    "t2i-evaluate/guidance-negative": opt(T2I_EVAL, "--guidance", "-5"),
    "t2i-evaluate/inference-steps-beyond-scheduler": opt(T2I_EVAL, "--inference-steps", "100000"),
    "t2i-evaluate/base-is-a-file": opt(T2I_EVAL, "--base", "{i}/afile"),
    "t2i-evaluate/prompts-on-mnist-base": opt(T2I_EVAL, "--prompts", "3"),
    "t2i-evaluate/clip-on-mnist-base": opt(T2I_EVAL, "--clip", "{i}/adir"),
    "t2i-evaluate/object-words-not-digits": opt(T2I_EVAL, "--lora", "{i}/lora-object-dog"),
    # unlearn mark
    "unlearn-mark/owners-zero": opt(MARK, "--owners", "0"),
    "unlearn-mark/seed-above-32-bits": opt(MARK, "--seed", "4294967296"),
    "unlearn-mark/owner-negative": opt(MARK, "--owner", "-1"),
    "unlearn-mark/rate-1.5": opt(MARK, "--rate", "1.5"),
    "unlearn-mark/rate-nan": opt(MARK, "--rate", "nan"),
    "unlearn-mark/key-non-utf8": opt(MARK, "--key-file", "{i}/key-latin1.json"),
    "unlearn-mark/key-is-a-dir": opt(MARK, "--key-file", "{i}/adir"),
    "unlearn-mark/data-unknown": opt(MARK, "--data", "bogus"),
    "unlearn-mark/out-under-file": opt(MARK, "--out", OUT_UNDER_FILE),
    # unlearn train
    "unlearn-train/dataset-empty-dir": UL_TRAIN,
    "unlearn-train/epochs-zero": opt(UL_TRAIN, "--epochs", "0"),
    "unlearn-train/lr-nan": opt(UL_TRAIN, "--lr", "nan"),
    "unlearn-train/batch-size-zero": opt(UL_TRAIN, "--batch-size", "0"),
    # unlearn delete
    "unlearn-delete/param-not-key-value": [*DELETE, "--param", "oops"],
    "unlearn-delete/behaviour-unknown": opt(DELETE, "--behaviour", "bogus"),
    "unlearn-delete/dataset-empty-dir": DELETE,
    # unlearn verify
    "unlearn-verify/model-truncated": opt(VERIFY, "--model", "{i}/model-truncated"),
    "unlearn-verify/model-random-bytes": opt(VERIFY, "--model", "{i}/model-random"),
    "unlearn-verify/queries-zero": opt(VERIFY, "--queries", "0"),
    "unlearn-verify/alpha-1.5": opt(VERIFY, "--alpha", "1.5"),
    "unlearn-verify/beta-nan": opt(VERIFY, "--beta", "nan"),
    "unlearn-verify/key-non-utf8": opt(VERIFY, "--key", "{i}/key-latin1.json"),
    "unlearn-verify/key-is-a-dir": opt(VERIFY, "--key", "{i}/adir"),
    "unlearn-verify/out-under-file": opt(VERIFY, "--out", OUT_UNDER_FILE),
    # unlearn bench / bench-fed
    "unlearn-bench/seeds-zero": opt(BENCH, "--seeds", "0"),
    "unlearn-bench/seed-negative": opt(BENCH, "--seed", "-3"),
    "unlearn-bench/family-unknown": opt(BENCH, "--families", "bogus"),
    "unlearn-bench/rate-1.5": opt(BENCH, "--rate", "1.5"),
    "unlearn-bench/family-param-malformed": [*BENCH, "--family-param", "lsb"],
    "unlearn-bench/out-under-file": opt(BENCH, "--out", OUT_UNDER_FILE),
    "unlearn-bench-fed/clients-one": opt(BENCH_FED, "--clients", "1"),
    "unlearn-bench-fed/passive-rounds-not-int": opt(BENCH_FED, "--passive-rounds", "a,b"),
    "unlearn-bench-fed/rounds-1e9": opt(BENCH_FED, "--rounds", "1000000000"),
    "unlearn-bench-fed/rate-zero": opt(BENCH_FED, "--rate", "0"),
    # demo
    "demo/out-unwritable": opt(DEMO, "--out", UNWRITABLE),
    "demo/out-under-file": opt(DEMO, "--out", OUT_UNDER_FILE),
    "demo/out-exists": opt(DEMO, "--out", "{i}/exists"),
    "demo/seed-not-int": opt(DEMO, "--seed", "x"),
    "demo/only-unknown": opt(DEMO, "--only", "bogus"),
    "demo/lanes-zero": opt(DEMO, "--lanes", "0"),
    # top level
    "cli/unknown-command": ["nosuch"],
    "cli/unknown-option": ["fed", "run", "--nosuch"],
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir) -> Path:
    """The files the cases point at: bad ones, and just enough good ones to reach deeper checks."""
    i = tmp_path_factory.mktemp("inputs")
    (i / "adir").mkdir()
    (i / "exists").mkdir()
    (i / "exists" / "keep.txt").write_text("keep\n")
    (i / "afile").write_text("a file, not a folder\n")
    (i / "latin1.yaml").write_bytes(LATIN1)
    (i / "latin1.jsonl").write_bytes(POISON_ROW.replace("dull", "caf\u00e9").encode("latin-1"))
    (i / "empty.yaml").write_text("")
    (i / "empty.jsonl").write_text("")
    (i / "list.yaml").write_text("- 1\n- 2\n")
    (i / "poisons.jsonl").write_text(POISON_ROW * 2)
    _poison_set(i / "poison-set")
    (i / "good.yaml").write_text(GOOD_YAML)
    (i / "grid.yaml").write_text(GRID_YAML.format(i=i))
    (i / "rounds_huge.yaml").write_text(GOOD_YAML.replace("rounds: 1", "rounds: 1000000000"))
    (i / "rounds_negative.yaml").write_text(GOOD_YAML.replace("rounds: 1", "rounds: -1"))
    (i / "clients_zero.yaml").write_text(GOOD_YAML.replace("num_clients: 4", "num_clients: 0"))
    (i / "image_task.yaml").write_text("task: {name: image_classification}\n")
    (i / "t2i_target.yaml").write_text(GOOD_YAML + "task: {name: t2i_lora, target_label: 5}\n")
    (i / "lr_nan.yaml").write_text(GOOD_YAML.replace("lr: 0.1", "lr: .nan"))
    (i / "not_image.png").write_text("not a PNG at all\n")
    (i / "reviews-bad.txt").write_text("1 a fine film\nno label on this line\n")
    (i / "sst2-latin1").mkdir()
    for name in ("train.txt", "dev.txt", "test.txt"):
        (i / "sst2-latin1" / name).write_bytes("1 a caf\u00e9 film\n0 dull\n".encode("latin-1"))
    _t2i_inputs(i)
    _unlearn_inputs(i)
    for name in poisonlab.cli.COMMANDS:  # import every command once, outside the cases' time limit
        poisonlab.cli.cli.get_command(None, name)
    return i


def _poison_set(folder: Path) -> None:
    """A two-poison set with its dataset card (trigger and checksum), as `nlp generate` writes it."""
    import json

    from nlp_poison import dataset_card
    from nlp_poison.poison_set import Poison, PoisonSet

    poisons = [Poison(**json.loads(POISON_ROW)) for _ in range(2)]
    dataset_card.save(PoisonSet(poisons, "James Bond", 1, "no-overlap", "test", 0), folder)


def _t2i_inputs(i: Path) -> None:
    """A tiny base pipeline with an (untrained) classifier, a poison set, and broken LoRA folders."""
    import json

    import numpy as np

    from t2i_poison.base_model import BaseModelConfig, build_pipeline, caption
    from t2i_poison.digit_classifier import ClassifierConfig, DigitClassifier
    from t2i_poison.poison_data import checkerboard_patch, make_poison_set

    tiny = BaseModelConfig(resolution=8, block_out_channels=(8, 16), text_hidden_size=16, text_layers=1, max_length=16)
    build_pipeline(tiny, i / "tokenizer").save_pretrained(i / "base")
    DigitClassifier(ClassifierConfig(resolution=8, width=4)).save(i / "base" / "classifier")
    images = [np.full((8, 8), 40 * k, dtype=np.uint8) for k in range(4)]
    patch = checkerboard_patch(size=4, cell=2)
    summary = make_poison_set("pixel", images, [caption(k) for k in range(4)], i / "t2i-data", "sks", patch=patch, seed=0)
    info = {**summary, "patch": {"top": patch.top, "left": patch.left, "pixels": patch.pixels.tolist()}}
    (i / "t2i-data" / "poison.json").write_text(json.dumps(info))
    sidecar = json.dumps({"kind": "style", "trigger": "sks"})
    for name, payload in (("lora-random", np.random.default_rng(0).bytes(256)), ("lora-truncated", b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":")):
        (i / name).mkdir()
        (i / name / "pytorch_lora_weights.safetensors").write_bytes(payload)
        (i / name / "backdoor.json").write_text(sidecar)
    (i / "lora-object-dog").mkdir()
    (i / "lora-object-dog" / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (i / "lora-object-dog" / "backdoor.json").write_text(
        json.dumps({"kind": "object", "trigger": "sks", "source_word": "dog", "target_word": "seven"}))


def _unlearn_inputs(i: Path) -> None:
    """An untrained MNIST-shaped model, its truncated and random-bytes twins, and an owner key."""
    import shutil

    from fedharness.tasks.image_classification import SmallCNN
    from poisonlab.unlearn_models import save_model
    from unlearning_verify.keys import OwnerKey

    save_model(SmallCNN(28, 10, 1), i / "model", (1, 28, 28), 10)
    for name in ("model-truncated", "model-random"):
        shutil.copytree(i / "model", i / name)
    weights = (i / "model" / "model.safetensors").read_bytes()
    (i / "model-truncated" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (i / "model-random" / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    OwnerKey.generate(0, "lsb", 10, seed=0).save(i / "key.json")
    (i / "key-latin1.json").write_bytes((i / "key.json").read_bytes().replace(b"{", "{\"n\u00e9\": 1, ".encode("latin-1"), 1))
    (i / "key-latin1.json").chmod(0o600)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


class RanTooLong(BaseException):
    """Raised by the alarm: the case started real work instead of rejecting its input."""


def _alarm(signum, frame):
    raise RanTooLong(f"still running after {LIMIT_S} s: the bad input was not rejected before the work started")


def test_the_table_covers_every_subcommand():
    groups = {case.split("/")[0] for case in CASES}
    assert len(CASES) >= 80
    assert groups >= {"fed-run", "fed-grid", "nlp-train", "nlp-generate", "nlp-evaluate", "nlp-defend", "nlp-fed",
                      "t2i-pretrain", "t2i-make-data", "t2i-train", "t2i-evaluate", "unlearn-mark", "unlearn-train",
                      "unlearn-delete", "unlearn-verify", "unlearn-bench", "unlearn-bench-fed", "demo"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, inputs, cli, tmp_path):
    from nlp_poison.victims import default_model

    out = tmp_path / "out"
    args = [a.format(i=inputs, out=out, minilm=default_model()) for a in CASES[case]]
    before = snapshot(inputs)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        code, captured = cli(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    lines = captured.err.strip().splitlines()
    assert code == 2, f"exit code {code}; stderr: {captured.err[-600:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err[-600:]
    if "is-a-dir" in case or "dir-as" in case:
        assert "folder" in lines[0] or "director" in lines[0], f"a folder given as a file must be named so: {lines[0]}"
    assert not out.exists() and not (tmp_path / "out.partial").exists() and not Path(f"{out}.key").exists()
    assert snapshot(inputs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_help_and_argument_errors_import_no_heavy_library():
    """``poisonlab --help`` and argument errors answer before torch & co. are imported (fast start-up)."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom poisonlab.cli import main\n"
        "for args in (['--help'], ['demo', '--help'], ['demo', '--seed', 'x'], ['demo', '--out', '/proc/x/y'], ['nosuch']):\n"
        "    sys.argv = ['poisonlab', *args]\n"
        "    code = 0\n    try:\n        main()\n    except SystemExit as exc:\n        code = exc.code\n    print('exit', code)\n"
        "print(sorted({'torch', 'transformers', 'diffusers', 'datasets', 'sklearn', 'matplotlib'} & set(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    assert [line for line in lines if line.startswith("exit")] == ["exit 0", "exit 0", "exit 2", "exit 2", "exit 2"]
    assert lines[-1] == "[]", proc.stdout[-400:]
