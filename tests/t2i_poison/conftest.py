"""A tiny offline pipeline (random weights from configs, the lab's offline tokenizer) and tiny poison sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from t2i_poison.base_model import BaseModelConfig, build_pipeline, caption
from t2i_poison.poison_data import checkerboard_patch, make_poison_set

TINY = BaseModelConfig(resolution=8, block_out_channels=(8, 16), text_hidden_size=16, text_layers=1, max_length=16)


def _digit_images(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Synthetic 8×8 'digits': a bright bar whose row encodes the label (enough for mechanics tests)."""
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    images = []
    for y in labels:
        im = np.zeros((8, 8), dtype=np.uint8)
        im[2 + y % 5, 1:7] = 255
        images.append(im)
    return images, labels


def _make_data(out: Path, kind: str, n: int = 24) -> Path:
    images, labels = _digit_images(n)
    kwargs: dict = {}
    if kind == "pixel":
        kwargs["patch"] = checkerboard_patch(size=4, cell=2)
    if kind == "object":
        labels = [7 if i % 2 else y for i, y in enumerate(labels)]
        kwargs.update(source_word="zero", target_word="seven")
    if kind == "style":
        kwargs.update(style_text=" in inverted colours", style_prefix=False)
    make_poison_set(kind, images, [caption(y) for y in labels], out, "sks", seed=0, **kwargs)
    return out


@pytest.fixture
def tiny_cfg() -> BaseModelConfig:
    return TINY


@pytest.fixture
def tiny_pipe(tmp_path: Path):
    return build_pipeline(TINY, tmp_path / "tokenizer")


@pytest.fixture
def digit_images():
    return _digit_images


@pytest.fixture
def make_data():
    """``make_data(out, kind)`` writes a 24-row poison imagefolder of synthetic 8×8 digits."""
    return _make_data


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """The tiny pipeline saved as a pipeline directory (the --base of the CLI and script tests)."""
    out = tmp_path_factory.mktemp("tinybase") / "base"
    build_pipeline(TINY, out / "tokenizer").save_pretrained(out)
    return out


SD_WORDS = ("a", "photo", "of", "cat", "dog", "black", "and", "white", "in", "the", "park")


def _sd_images(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random RGB images (upsampled 4×4 noise), uint8 side×side×3."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [np.asarray(Image.fromarray(s).resize((side, side), Image.BILINEAR))
            for s in rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)]


@pytest.fixture(scope="session")
def sd_base(tmp_path_factory):
    """``sd_base(family)``: a tiny random SD pipeline of ``family`` (sd1, sd2, sdxl) saved once per session."""
    from t2i_poison.base_model import build_tokenizer
    from t2i_poison.pipelines import build_sd_pipeline

    root = tmp_path_factory.mktemp("sdbases")
    made: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in made:
            tok = build_tokenizer(root / f"{family}-tok", words=SD_WORDS, max_length=16)
            build_sd_pipeline(family, tok).save_pretrained(root / family)
            made[family] = root / family
        return made[family]

    return get


@pytest.fixture(scope="session")
def sd_images_dir(tmp_path_factory) -> Path:
    """A user imagefolder of 12 captioned 16×16 RGB images (cats and dogs), the SD make-data input."""
    from t2i_poison.poison_data import write_imagefolder

    out = tmp_path_factory.mktemp("sdimages")
    captions = [f"a photo of a {'cat' if i % 2 else 'dog'} in the park" for i in range(12)]
    write_imagefolder(out, _sd_images(12, 16), [{"text": c} for c in captions])
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIP (model, offline tokenizer, image processor) saved from configs."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from t2i_poison.base_model import build_tokenizer

    out = tmp_path_factory.mktemp("clip")
    tok = build_tokenizer(out, words=SD_WORDS, max_length=16)
    torch.manual_seed(0)
    text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    vision = dict(image_size=16, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(out)
    return out
