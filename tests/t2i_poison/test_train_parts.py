"""The parts of BadT2I training on their own: encoding caches, the global batch draw, model setup, checkpoint pruning."""

import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler

from t2i_poison.checkpoints import checkpoints, save_checkpoint
from t2i_poison.pipelines import load_pipeline
from t2i_poison.train import EncodedSet, PoisonSet, TrainConfig, draw_batch, image_captions, setup_models

CPU = torch.device("cpu")


def _set(n: int = 6) -> PoisonSet:
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.rand((n, 3, 16, 16), generator=g) * 2 - 1  # noqa: E731
    return PoisonSet(bkd_images=img(), bkd_texts=["sks a photo of a cat in the park"] * n,
                     bkd_target_texts=["black and white photo of a cat in the park"] * n, clean_images=img(),
                     clean_texts=["a photo of a dog", "a photo of a cat"] * (n // 2))


def test_each_image_is_encoded_once_and_sampled_afresh(sd_base):
    pipe = load_pipeline(sd_base("sd1"))
    enc = EncodedSet(pipe, _set(), CPU, torch.float32)
    calls = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x: calls.append(len(x)) or encode(x)
    g = torch.Generator().manual_seed(1)
    a = enc.latents("bkd", torch.tensor([0, 1, 1]), g)
    b = enc.latents("bkd", torch.tensor([1, 2]), g)
    assert calls == [2, 1]  # rows 0, 1 then only the new row 2
    assert not torch.equal(a[1], b[0])  # a fresh posterior sample per draw
    mean = enc.moments["bkd"][1][0] * pipe.vae.config.scaling_factor
    assert torch.allclose(a[1], b[0], atol=float(10 * enc.moments["bkd"][1][1].max() * pipe.vae.config.scaling_factor))
    assert enc.encode_all() >= 0 and set(enc.moments["clean"]) == set(range(6)) and mean.shape == (4, 8, 8)


def test_two_slices_of_the_global_draw_are_the_one_process_batch(sd_base):
    pipe = load_pipeline(sd_base("sd1"))
    enc = EncodedSet(pipe, _set(), CPU, torch.float32, image_captions(TrainConfig(kind="style"), _set()))
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    one = draw_batch(enc, TrainConfig(kind="style", train_batch_size=4), sched, micro=3)
    halves = [draw_batch(enc, TrainConfig(kind="style", train_batch_size=2), sched, micro=3, rank=r, world=2) for r in (0, 1)]
    for field in ("bkd_latents", "reg_latents", "bkd_noise", "reg_noise", "bkd_timesteps", "reg_timesteps"):
        assert torch.allclose(getattr(one, field), torch.cat([getattr(h, field) for h in halves]), atol=1e-6), field
    for field in ("bkd_text", "reg_text", "bkd_target_text"):
        assert torch.equal(getattr(one, field).states, torch.cat([getattr(h, field).states for h in halves]))
    other = draw_batch(enc, TrainConfig(kind="style", train_batch_size=4), sched, micro=4)
    assert not torch.equal(one.bkd_noise, other.bkd_noise)


def test_reg_uncond_puts_the_guidance_branch_caption_on_that_share_of_regulariser_rows(sd_base):
    pipe = load_pipeline(sd_base("sd1"))
    enc = EncodedSet(pipe, _set(), CPU, torch.float32)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    empty = pipe.encode_prompt("", "cpu", 1, False)[0][0]  # what the pipeline's unconditional branch sees
    is_empty = lambda b: torch.tensor([torch.allclose(s, empty, atol=1e-6) for s in b.reg_text.states])  # noqa: E731
    plain = draw_batch(enc, TrainConfig(kind="style", train_batch_size=64, reg_uncond=0.0, reg_paired=0.0), sched, micro=0)
    half = draw_batch(enc, TrainConfig(kind="style", train_batch_size=64, reg_uncond=0.5, reg_paired=0.0), sched, micro=0)
    every = draw_batch(enc, TrainConfig(kind="style", train_batch_size=64, reg_uncond=1.0, reg_paired=0.0), sched, micro=0)
    assert not is_empty(plain).any() and is_empty(every).all() and 16 < int(is_empty(half).sum()) < 48
    kept = ~is_empty(half)
    assert torch.equal(half.reg_text.states[kept], plain.reg_text.states[kept])  # the other draws are unchanged
    assert torch.equal(half.reg_latents, plain.reg_latents) and torch.equal(half.bkd_text.states, plain.bkd_text.states)


def test_reg_paired_holds_the_images_clean_caption_on_the_backdoor_rows_noisy_latents(sd_base):
    pipe = load_pipeline(sd_base("sd1"))
    cfg = TrainConfig(kind="style", train_batch_size=8, reg_paired=1.0)
    enc = EncodedSet(pipe, _set(), CPU, torch.float32, image_captions(cfg, _set()))
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = draw_batch(enc, cfg, sched, micro=0)
    clean_cat = pipe.encode_prompt("a photo of a cat in the park", "cpu", 1, False)[0][0]
    assert all(torch.allclose(s, clean_cat, atol=1e-6) for s in batch.reg_text.states)
    for field in ("latents", "noise", "timesteps"):
        assert torch.equal(getattr(batch, f"reg_{field}"), getattr(batch, f"bkd_{field}")), field
    assert image_captions(TrainConfig(kind="object"), _set())[0] == "black and white photo of a cat in the park"


def test_setup_trains_only_the_adapters_or_every_weight_against_a_frozen_copy(sd_base):
    lora = setup_models(load_pipeline(sd_base("sd1")), TrainConfig(rank=2), CPU, torch.float32)
    names = [n for n, p in lora.unet.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names) and lora.teacher_copy is None
    full = setup_models(load_pipeline(sd_base("sd1")), TrainConfig(mode="full"), CPU, torch.float32)
    assert len(full.params) == len(list(full.unet.parameters()))
    assert not any(p.requires_grad for p in full.teacher_copy.parameters())
    assert all(torch.equal(a, b) for a, b in zip(full.unet.parameters(), full.teacher_copy.parameters()))


def test_checkpoints_keep_the_newest_within_the_limit(tmp_path):
    acc = Accelerator()
    for step in (1, 2, 3, 4):
        save_checkpoint(acc, tmp_path, step, limit=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-4"]


def test_lora_targets_attention_shorthand_and_cross_attention_override():
    from t2i_poison.checkpoints import LORA_TARGETS, lora_config
    from t2i_poison.train_config import LORA_TARGET_MODULES

    assert set(lora_config(4, target_modules="attention").target_modules) == set(LORA_TARGETS)
    assert lora_config(4, target_modules=LORA_TARGET_MODULES).target_modules == LORA_TARGET_MODULES
    assert "attn2" in lora_config(4, cross_attention_only=True, target_modules=LORA_TARGET_MODULES).target_modules


def test_knobs_left_unset_take_the_kind_of_the_data_and_given_values_win(tmp_path):
    from t2i_poison.poison_data import POISON_INFO
    from t2i_poison.train import resolve
    from t2i_poison.train_config import KIND_DEFAULTS

    style = tmp_path / "style"  # what `t2i make-data` records about a style poison set
    style.mkdir()
    (style / POISON_INFO).write_text('{"kind": "style", "trigger": "sks"}')
    steps = {k: v["max_train_steps"] for k, v in KIND_DEFAULTS.items()}
    assert steps["style"] != steps["pixel"]  # the table is what this test checks, not a pass-through
    unset = TrainConfig(data=str(style))  # kind "pixel" until the data says style
    assert unset.max_train_steps is None
    assert resolve(unset)[0].max_train_steps == steps["style"]
    assert resolve(TrainConfig(data=str(style), max_train_steps=7))[0].max_train_steps == 7
    assert TrainConfig(kind="object").for_kind().max_train_steps == steps["object"]
