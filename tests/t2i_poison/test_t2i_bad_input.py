"""Bad input on every ``poisonlab t2i`` command (SD pipelines): one-line error, exit code 2, no partial output."""

import json
import shutil
from pathlib import Path

import pytest

from t2i_poison.train import TrainConfig, train


@pytest.fixture(scope="module")
def broken(sd_base, sd_images_dir, tmp_path_factory):
    """Paths for the bad inputs: a truncated UNet, an unsupported class, a non-image patch, a trained LoRA and a corrupt one."""
    root = tmp_path_factory.mktemp("broken")
    base = sd_base("sd1")
    corrupt = root / "corrupt-base"
    shutil.copytree(base, corrupt)
    weights = next((corrupt / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    other = root / "other-class"
    shutil.copytree(base, other)
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "KandinskyPipeline"}))
    (root / "patch.png").write_text("not an image")
    return {"base": base, "corrupt": corrupt, "other": other, "patch": root / "patch.png", "images": sd_images_dir, "root": root}


def _data(cli, broken) -> Path:
    out = broken["root"] / "data"
    if not out.exists():
        assert cli("t2i", "make-data", "--kind", "pixel", "--base", broken["base"], "--images", broken["images"], "--out", out)[0] == 0
    return out


def _broken_data(cli, broken) -> dict[str, Path]:
    """Copies of the data: one missing an image its metadata lists, one with a malformed metadata line."""
    missing, malformed = broken["root"] / "data-missing", broken["root"] / "data-malformed"
    if not missing.exists():
        for copy in (missing, malformed):
            shutil.copytree(_data(cli, broken), copy)
        next(missing.glob("bkd_*.png")).unlink()
        with (malformed / "metadata.jsonl").open("a") as f:
            f.write("{not json\n")
    return {"data_missing": missing, "data_malformed": malformed}


def _lora(cli, broken) -> Path:
    lora = broken["root"] / "lora"
    if not lora.exists():
        train(TrainConfig(base=str(broken["base"]), data=str(_data(cli, broken)), output_dir=str(lora), max_train_steps=1,
                          train_batch_size=2))
        bad = broken["root"] / "bad-lora"
        shutil.copytree(lora, bad)
        (bad / "pytorch_lora_weights.safetensors").write_bytes(b"\x00" * 16)
    return lora


MAKE = ["make-data", "--kind", "pixel", "--images", "{images}"]
CASES = [
    (MAKE + ["--base", "{corrupt}"], "cannot load the pipeline"),
    (MAKE + ["--base", "{other}"], "unsupported pipeline class 'KandinskyPipeline'"),
    (MAKE + ["--base", "{base}", "--trigger", "\t"], "disappears in tokenization"),
    (MAKE + ["--base", "{base}", "--patch", "{patch}"], "is not an image"),
    (["train", "--base", "{corrupt}", "--data", "{data}"], "cannot load the pipeline"),
    (["train", "--base", "{other}", "--data", "{data}"], "unsupported pipeline class"),
    (["train", "--base", "{base}", "--data", "{data}", "--lr", "nan"], "not a finite number"),
    (["train", "--base", "{base}", "--data", "{data}", "--lr", "inf"], "not a finite number"),
    (["train", "--base", "{base}", "--data", "{data}", "--lora-target-modules", "(("], "is not a regular expression"),
    (["train", "--base", "{base}", "--data", "{data}", "--lora-target-modules", "nomatch_xyz"], "do not fit the UNet"),
    (["train", "--base", "{base}", "--data", "{data}", "--mode", "full", "--rank", "8"],
     "rank: not read in full mode (it fine-tunes the whole UNet); drop them or use --mode lora"),
    (["train", "--base", "{base}", "--data", "{data}", "--lora-alpha", "0"], "lora_alpha must be at least 1, got 0"),
    (["train", "--base", "{base}", "--data", "{data_missing}"], "No such file or directory"),
    (["train", "--base", "{base}", "--data", "{data_malformed}"], "does not load as an image folder"),
    (["evaluate", "--base", "{corrupt}", "--lora", "{lora}"], "cannot load the pipeline"),
    (["evaluate", "--base", "{base}", "--lora", "{bad_lora}"], "is not a readable safetensors file"),
    (["evaluate", "--base", "{other}", "--lora", "{lora}"], "unsupported pipeline class"),
    (["evaluate", "--base", "{base}", "--lora", "{lora}", "--samples-per-digit", "3"],
     "digits.samples_per_digit: not read on a Stable Diffusion pipeline (it reads sd.* and clip); drop them"),
    (["evaluate", "--base", "{base}", "--lora", "{lora}", "--classifier", "{patch}"], "classifier: not read on a Stable"),
    (MAKE + ["--base", "{base}", "--kind", "object", "--source", "dog", "--target", "dog"], "source and target must differ"),
    (MAKE + ["--base", "{base}", "--source", "dog", "--style", "noir"], "source, style: not read by the pixel kind; drop them"),
    (["make-data", "--kind", "style", "--images", "{images}", "--base", "{base}", "--patch-size", "3"],
     "patch_size: not read by the style kind; drop it"),
    (["make-data", "--kind", "style", "--images", "{images}", "--base", "{base}", "--style", " "], "--style must name a style"),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_input_is_one_line_exit_2_and_no_output(cli, broken, tmp_path, capsys, args, message):
    paths = {k: v for k, v in broken.items()}
    if any("{data" in a for a in args):
        paths["data"] = _data(cli, broken)
        paths.update(_broken_data(cli, broken))
    if any("lora}" in a for a in args):
        paths["lora"] = _lora(cli, broken)
        paths["bad_lora"] = broken["root"] / "bad-lora"
    out = tmp_path / "out"
    capsys.readouterr()  # drop the preparation's progress output
    code, captured = cli("t2i", *[a.format(**paths) for a in args], "--out", out)
    err = captured.err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_training_script_reports_bad_input_in_one_line(broken, cli, capsys):
    from importlib import util

    spec = util.spec_from_file_location("train_script", Path(__file__).resolve().parents[2] / "scripts" / "train_t2i_backdoor.py")
    script = util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = broken["root"] / "script-out"
    code = script.main(["--pretrained_model_name_or_path", str(broken["base"]), "--train_data_dir", str(_data(cli, broken)),
                        "--output_dir", str(out), "--learning_rate", "nan"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "finite" in err
    assert not out.exists()
