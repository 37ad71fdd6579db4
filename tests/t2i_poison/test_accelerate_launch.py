"""The training script under ``accelerate launch``: two CPU processes follow one process with the same global batch.

``accelerate launch --cpu --num_processes 2`` starts ONE process in accelerate 1.16 (its multi-CPU path
needs ``mpirun`` and a hostfile), so the test takes accelerate's torchrun launcher (``--multi_gpu``) with
``ACCELERATE_USE_CPU=true``: two gloo processes on the CPU, as on a GPU node but without GPUs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from t2i_poison.train import LORA_WEIGHTS, TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4  # relative: per logged loss, and max |ΔLoRA| over the largest LoRA weight (summation order only)


def test_two_processes_match_one_process_with_the_same_global_batch(cli, sd_base, sd_images_dir, tmp_path):
    base = sd_base("sd1")
    code, out = cli("t2i", "make-data", "--kind", "style", "--base", base, "--images", sd_images_dir, "--out", tmp_path / "data")
    assert code == 0, out.err
    # the default recipe (attn+conv targets, lr 1e-3); at lr 1e-2 Adam turns the all-reduce's rounding in the
    # near-zero conv-LoRA gradients into lr-sized steps (4e-4 on weights of 0.27), which would hide a real mismatch
    common = dict(base=str(base), data=str(tmp_path / "data"), max_train_steps=3, seed=3)
    one = train(TrainConfig(output_dir=str(tmp_path / "one"), train_batch_size=4, **common))
    (tmp_path / "run.yaml").write_text(json.dumps({**common, "train_batch_size": 2, "output_dir": str(tmp_path / "two")}))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "scripts" / "train_t2i_backdoor.py"),
           "--config", str(tmp_path / "run.yaml"), "--report_to", "tensorboard"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == 3
    two = [json.loads(line) for line in (tmp_path / "two" / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one.log, two):
        for key in ("loss", "loss_bkd", "loss_reg"):
            assert abs(a[key] - b[key]) <= TOLERANCE * abs(a[key]), (key, a, b)
    w1, w2 = load_file(tmp_path / "one" / LORA_WEIGHTS), load_file(tmp_path / "two" / LORA_WEIGHTS)
    assert w1.keys() == w2.keys()
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    scale = max(float(w1[k].abs().max()) for k in w1)
    assert diff <= TOLERANCE * scale  # measured: 2.0e-6 on weights up to 0.26
    assert list((tmp_path / "two" / "logs").rglob("events.out.tfevents*"))
