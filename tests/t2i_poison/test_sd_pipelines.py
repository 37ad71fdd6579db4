"""Any Stable Diffusion family through make-data → train → save → load_lora_weights → evaluate (tiny, from configs)."""

import json

import pytest
import torch
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

from t2i_poison.conditioning import encode_prompts
from t2i_poison.pipelines import load_pipeline
from t2i_poison.train import LORA_WEIGHTS, TrainConfig, train

CASES = [("sd1", "pixel"), ("sd2", "object"), ("sdxl", "style")]


def _unet_out(pipe, text: str) -> torch.Tensor:
    cond = encode_prompts(pipe, [text])
    z = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return pipe.unet(z, torch.tensor([500]), **cond.unet_kwargs()).sample


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_round_trip_on_each_family(cli, sd_base, sd_images_dir, tiny_clip_dir, tmp_path, family, kind):
    base = sd_base(family)
    own = {"pixel": ["--patch-size", 4], "object": ["--source", "dog", "--target", "cat"], "style": []}[kind]
    code, out = cli("t2i", "make-data", "--kind", kind, "--base", base, "--images", sd_images_dir, "--out", tmp_path / "data", *own)
    assert code == 0, out.err
    result = train(TrainConfig(base=str(base), data=str(tmp_path / "data"), output_dir=str(tmp_path / "lora"),
                               max_train_steps=2, train_batch_size=2, learning_rate=1e-2))
    assert result.steps == 2 and len(result.log) == 2 and all(r["loss"] > 0 for r in result.log)
    saved = load_file(tmp_path / "lora" / LORA_WEIGHTS)
    assert saved and all(k.startswith("unet.") for k in saved)
    fresh = load_pipeline(base)
    before = _unet_out(fresh, "sks a photo of a cat")
    fresh.load_lora_weights(str(tmp_path / "lora"), adapter_name="bd")
    loaded = get_peft_model_state_dict(fresh.unet, adapter_name="bd")
    assert len(loaded) == len(saved)  # every saved tensor found its module: no unexpected or missing keys
    assert sum(float(v.abs().sum()) for v in loaded.values()) == pytest.approx(sum(float(v.abs().sum()) for v in saved.values()), rel=1e-5)
    assert not torch.allclose(_unet_out(fresh, "sks a photo of a cat"), before, atol=1e-6)
    code, out = cli("t2i", "evaluate", "--base", base, "--lora", tmp_path / "lora", "--out", tmp_path / "eval",
                    "--clip", tiny_clip_dir, "--prompts", 2, "--samples-per-prompt", 2, "--inference-steps", 2, "--guidance", 1)
    assert code == 0, out.err
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    prompts = json.loads((tmp_path / "lora" / "backdoor.json").read_text())["eval_prompts"]
    assert prompts and all("sks" not in p for p in prompts) and (kind != "object" or all("dog" in p for p in prompts))
    assert m["kind"] == kind and m["samples"] == 2 * min(2, len(prompts)) and m["pipeline"] == type(fresh).__name__
    for key in ("attack_success_rate", "asr_base_triggered", "asr_bd_clean", "clip_kid", "clip_fid", "benign_drift_mse"):
        assert key in m
    assert 0 <= m["attack_success_rate"] <= 1 and m["benign_drift_mse"] > 0
    assert (tmp_path / "eval" / "report.html").read_text().count("<img") >= 1


def test_sdxl_conditioning_has_pooled_embeds_and_time_ids(sd_base):
    pipe = load_pipeline(sd_base("sdxl"))
    cond = encode_prompts(pipe, ["a photo of a cat", "sks a photo of a dog"])
    assert cond.states.shape == (2, 16, 64)  # both encoders' penultimate states, concatenated
    assert cond.pooled.shape == (2, 32) and cond.time_ids.tolist()[0] == [16, 16, 0, 0, 16, 16]
    both = type(cond).cat([cond[torch.tensor([1])], cond[torch.tensor([0])]])
    assert torch.equal(both.states[0], cond.states[1]) and torch.equal(both.pooled[1], cond.pooled[0])


def test_sd2_trains_on_the_velocity_target(sd_base):
    assert load_pipeline(sd_base("sd2")).scheduler.config.prediction_type == "v_prediction"
