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
