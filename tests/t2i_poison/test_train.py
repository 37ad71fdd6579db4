import json

import torch
import pytest
from safetensors.torch import load_file

from labcore.errors import InputError
from t2i_poison.base_model import caption
from t2i_poison.pipelines import load_pipeline
from t2i_poison.train import LORA_WEIGHTS, SIDECAR, TrainConfig, encode_texts, fit, lora_config, load_poison_set, teacher_mode


def _unet_out(pipe, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((2, 1, 8, 8), generator=g)
    text = torch.stack(list(encode_texts(pipe, ["sks " + caption(3), caption(4)]).values()))
    with torch.no_grad():
        return pipe.unet(z, torch.tensor([10, 500]), encoder_hidden_states=text).sample


def test_adapters_off_equals_the_base_model(tiny_pipe):
    base = _unet_out(tiny_pipe)
    tiny_pipe.unet.add_adapter(lora_config(4))
    with torch.no_grad():
        for name, p in tiny_pipe.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    with_lora = _unet_out(tiny_pipe)
    with teacher_mode(tiny_pipe.unet):
        teacher = _unet_out(tiny_pipe)
    assert not torch.allclose(with_lora, base, atol=1e-4)
    assert torch.equal(teacher, base)
    assert torch.equal(_unet_out(tiny_pipe), with_lora)


def test_cross_attention_only_targets_attn2():
    import re

    cfg = lora_config(4, cross_attention_only=True)
    assert re.fullmatch(cfg.target_modules, "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k")
    assert not re.fullmatch(cfg.target_modules, "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k")


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"kind": "pixel", "max_train_steps": 4, "train_batch_size": 4, "checkpointing_steps": 2,
                          "learning_rate": 1e-2, **kw})


def test_lora_save_then_load_reproduces_outputs(tiny_base_dir, make_data, tmp_path):
    data = load_poison_set(make_data(tmp_path / "data", "pixel"), 8, 1)
    trained = load_pipeline(tiny_base_dir)
    fit(trained, data, _cfg(), tmp_path / "out")
    assert (tmp_path / "out" / LORA_WEIGHTS).is_file() and (tmp_path / "out" / SIDECAR).is_file()
    fresh = load_pipeline(tiny_base_dir)
    before = _unet_out(fresh)
    fresh.load_lora_weights(str(tmp_path / "out"))
    assert not torch.allclose(_unet_out(fresh), before, atol=1e-5)
    assert torch.allclose(_unet_out(fresh), _unet_out(trained), atol=1e-6)
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.allclose(fresh("sks " + caption(1), num_inference_steps=3, generator=g(), output_type="pt").images,
                          trained("sks " + caption(1), num_inference_steps=3, generator=g(), output_type="pt").images, atol=1e-5)


def test_resume_continues_step_count_and_restores_lora(tiny_base_dir, make_data, tmp_path):
    data = load_poison_set(make_data(tmp_path / "data", "object"), 8, 1)
    full = fit(load_pipeline(tiny_base_dir), data, _cfg(kind="object"), tmp_path / "full")
    fit(load_pipeline(tiny_base_dir), data, _cfg(kind="object", max_train_steps=2), tmp_path / "cut")
    assert (tmp_path / "cut" / "checkpoint-2" / LORA_WEIGHTS).is_file()
    resumed = fit(load_pipeline(tiny_base_dir), data, _cfg(kind="object"), tmp_path / "cut", resume_from_checkpoint="latest")
    assert full["steps"] == resumed["steps"] == 4
    a, b = load_file(tmp_path / "full" / LORA_WEIGHTS), load_file(tmp_path / "cut" / LORA_WEIGHTS)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    untrained = fit(load_pipeline(tiny_base_dir), data, _cfg(kind="object", max_train_steps=2), tmp_path / "two")
    c = load_file(tmp_path / "two" / LORA_WEIGHTS)
    assert untrained["steps"] == 2 and not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)


def test_full_unet_mode_trains_every_weight_against_a_frozen_copy(tiny_base_dir, make_data, tmp_path):
    data = load_poison_set(make_data(tmp_path / "data", "style"), 8, 1)
    pipe = load_pipeline(tiny_base_dir)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    fit(pipe, data, _cfg(kind="style", mode="full", max_train_steps=2, learning_rate=1e-3), tmp_path / "out")
    after = load_pipeline(tiny_base_dir).unet.__class__.from_pretrained(tmp_path / "out" / "unet").state_dict()
    changed = sum(not torch.equal(before[k], after[k]) for k in before)
    assert changed > len(before) // 2


def test_dropped_trigger_stops_training_before_any_output(tiny_base_dir, make_data, tmp_path):
    data = load_poison_set(make_data(tmp_path / "data", "pixel"), 8, 1)
    with pytest.raises(InputError, match="disappears in tokenization"):
        fit(load_pipeline(tiny_base_dir), data, _cfg(trigger="   "), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gradient_checkpointing_and_bf16_follow_the_plain_run(tiny_base_dir, make_data, tmp_path):
    """Checkpointing recomputes activations (same losses, same LoRA); bf16 autocast stays close and exports fp32."""
    data = load_poison_set(make_data(tmp_path / "data", "style"), 8, 1)
    runs = {}
    for name, kw in {"plain": {}, "ckpt": {"gradient_checkpointing": True}, "bf16": {"mixed_precision": "bf16"}}.items():
        logs: list = []
        fit(load_pipeline(tiny_base_dir), data, _cfg(kind="style", max_train_steps=2, **kw), tmp_path / name, log=logs.append)
        runs[name] = (logs, load_file(tmp_path / name / LORA_WEIGHTS))
    (plain, w0), (ckpt, w1), (bf16, w2) = runs["plain"], runs["ckpt"], runs["bf16"]
    assert all(abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"]) for a, b in zip(plain, ckpt))
    assert all(torch.allclose(w0[k], w1[k], atol=1e-6) for k in w0)
    assert all(abs(a["loss"] - b["loss"]) <= 0.1 * abs(a["loss"]) for a, b in zip(plain, bf16))  # measured 2 %, 6.5 %
    assert all(v.dtype == torch.float32 for v in w2.values())
    assert json.loads((tmp_path / "bf16" / SIDECAR).read_text())["mixed_precision"] == "bf16"


def test_config_yaml_of_a_run_reruns_it(cli, tiny_base_dir, make_data, tmp_path):
    data = make_data(tmp_path / "data", "pixel")
    (data / "poison.json").write_text(json.dumps({"kind": "pixel", "trigger": "sks"}))
    code, out = cli("t2i", "train", "--base", tiny_base_dir, "--data", data, "--out", tmp_path / "a", "--steps", 2,
                    "--batch-size", 2, "--lr", 1e-2, "--seed", 4)
    assert code == 0, out.err
    code, out = cli("t2i", "train", "--config", tmp_path / "a" / "config.yaml", "--out", tmp_path / "b")
    assert code == 0, out.err
    a, b = load_file(tmp_path / "a" / LORA_WEIGHTS), load_file(tmp_path / "b" / LORA_WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    code, out = cli("t2i", "train", "--config", tmp_path / "a" / "config.yaml", "--out", tmp_path / "c", "--seed", 5)
    c = load_file(tmp_path / "c" / LORA_WEIGHTS)
    assert code == 0 and not all(torch.equal(a[k], c[k]) for k in a)
