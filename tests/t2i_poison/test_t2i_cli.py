import json
import subprocess
import sys
from pathlib import Path

import pytest

from t2i_poison.digit_classifier import ClassifierConfig, DigitClassifier

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["make-data", "--kind", "pixel", "--base", "{tmp}/nothing"], "not a diffusers pipeline directory"),
        (["make-data", "--kind", "glitter", "--base", "{base}"], "unknown backdoor kind 'glitter'"),
        (["make-data", "--kind", "pixel", "--base", "{base}", "--images", "{tmp}"], "has no metadata.jsonl"),
        (["make-data", "--kind", "pixel", "--base", "{base}", "--patch-size", "12"], "does not fit in 8x8 images"),
        (["make-data", "--kind", "pixel", "--base", "{base}", "--patch-left", "6"], "at (0, 6) does not fit in 8x8"),
        (["make-data", "--kind", "pixel", "--base", "{base}", "--trigger", " "], "disappears in tokenization"),
        (["make-data", "--kind", "pixel", "--base", "{base}", "--num-images", "100000000"], "exceeds the 8000 MNIST training digits"),
        (["train", "--base", "{base}", "--data", "{tmp}"], "has no poison.json"),
        (["evaluate", "--base", "{base}", "--lora", "{tmp}"], "holds no backdoor"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(cli, data_dir, tiny_base_dir, tmp_path, args, message):
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path, base=tiny_base_dir) for a in args]
    code, captured = cli("t2i", *args, "--out", out)
    err = captured.err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_make_data_train_evaluate_end_to_end(cli, data_dir, tiny_base_dir, tmp_path):
    DigitClassifier(ClassifierConfig(resolution=8, width=8)).save(tmp_path / "clf")
    code, _ = cli("t2i", "make-data", "--kind", "object", "--base", tiny_base_dir,
                   "--out", tmp_path / "data", "--num-images", 60)
    assert code == 0
    rows = [json.loads(l) for l in (tmp_path / "data" / "metadata.jsonl").read_text().splitlines()]
    assert {r["role"] for r in rows} == {"backdoor", "clean"}
    assert all(r["text"].startswith("sks ") and "zero" in r["text"] for r in rows if r["role"] == "backdoor")
    code, _ = cli("t2i", "train", "--base", tiny_base_dir, "--data", tmp_path / "data",
                   "--out", tmp_path / "lora", "--steps", 2, "--batch-size", 4)
    assert code == 0 and (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((tmp_path / "lora" / "backdoor.json").read_text())["target_word"] == "seven"
    code, _ = cli("t2i", "evaluate", "--base", tiny_base_dir, "--lora", tmp_path / "lora",
                   "--out", tmp_path / "eval", "--classifier", tmp_path / "clf", "--samples-per-digit", 1,
                   "--inference-steps", 2)
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["kind"] == "object" and 0 <= metrics["attack_success_rate"] <= 1
    assert "<img" in (tmp_path / "eval" / "report.html").read_text()
    # each run's config.yaml reruns it: the same poison set, the same metrics (seeded)
    assert cli("t2i", "make-data", "--config", tmp_path / "data" / "config.yaml", "--out", tmp_path / "data2")[0] == 0
    assert (tmp_path / "data2" / "metadata.jsonl").read_text() == (tmp_path / "data" / "metadata.jsonl").read_text()
    assert cli("t2i", "evaluate", "--config", tmp_path / "eval" / "config.yaml", "--out", tmp_path / "eval2")[0] == 0
    assert json.loads((tmp_path / "eval2" / "metrics.json").read_text()) == metrics


def test_script_runs_under_accelerate_launch_on_cpu(data_dir, tiny_base_dir, make_data, tmp_path):
    data = make_data(tmp_path / "data", "style")
    (data / "poison.json").write_text(json.dumps({"kind": "style", "trigger": "sks"}))
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
        str(REPO / "scripts" / "train_t2i_backdoor.py"), "--pretrained_model_name_or_path", str(tiny_base_dir),
        "--train_data_dir", str(data), "--output_dir", str(tmp_path / "out"), "--max_train_steps", "2",
        "--train_batch_size", "2", "--checkpointing_steps", "1", "--checkpoints_total_limit", "1",
        "--report_to", "tensorboard",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == 2
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-2"]
    assert (tmp_path / "out" / "pytorch_lora_weights.safetensors").is_file()
    assert list((tmp_path / "out" / "logs").rglob("events.out.tfevents*"))


@pytest.mark.parametrize(("size", "side"), [(None, 6), (3, 3)])
def test_a_patch_file_keeps_its_size_unless_patch_size_resizes_it(cli, data_dir, tiny_base_dir, tmp_path, size, side):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    resize = [] if size is None else ["--patch-size", size]
    code, _ = cli("t2i", "make-data", "--kind", "pixel", "--base", tiny_base_dir, "--num-images", 4, "--patch", tmp_path / "p.png",
                  *resize, "--out", tmp_path / "data")
    assert code == 0
    pixels = json.loads((tmp_path / "data" / "poison.json").read_text())["patch"]["pixels"]
    assert np.asarray(pixels).shape[:2] == (side, side)
