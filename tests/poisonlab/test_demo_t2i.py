"""The demo's T2I base is pretrained once per recipe and seed into the user's cache, then reused."""

import torch

from poisonlab import demo_t2i


def test_demo_base_is_cached_per_recipe_and_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("POISONLAB_T2I_BASE", raising=False)
    tiny = demo_t2i.base_recipe
    monkeypatch.setattr(demo_t2i, "base_recipe", lambda size, seed: tiny("tiny", seed))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 28, 28, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    first, note1 = demo_t2i.demo_base(tmp_path / "run1", "quick", 0, x, y)
    assert first.parent == tmp_path / "cache" / "t2i-base" and "trained by this run" in note1
    assert (first / "model_index.json").is_file() and (first / "classifier" / "model.safetensors").is_file()
    mtime = (first / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    again, note2 = demo_t2i.demo_base(tmp_path / "run2", "quick", 0, x, y)
    assert again == first and "reused" in note2
    assert (first / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == mtime
    assert not list(first.parent.glob("*.partial"))
    keys = {demo_t2i.recipe_key(*demo_t2i.base_recipe(size, seed)) for size in ("quick", "full") for seed in (0, 1)}
    assert first.name in keys and len(keys) == 2  # the key follows the seed (quick and full share the tiny recipe here)
