"""Load a text-to-image pipeline directory of a family BadT2I handles: the lab's MNIST base, SD 1.x/2.x, SDXL.

Any other ``_class_name`` in ``model_index.json`` is refused with a one-line error, and a directory whose
weights cannot be read (a truncated or corrupt ``.safetensors``, a missing component) is reported as
such instead of a library traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import DiffusionPipeline

from labcore.errors import InputError

SUPPORTED = ("DigitDiffusionPipeline", "StableDiffusionPipeline", "StableDiffusionXLPipeline")


def pipeline_class_name(path: Path) -> str:
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise InputError(f"{path} is not a diffusers pipeline directory (no model_index.json); pass a saved pipeline")
    try:
        return str(json.loads(index.read_text(encoding="utf-8")).get("_class_name"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{index} is not valid JSON ({exc}); pass a pipeline saved with save_pretrained") from None


def load_pipeline(path: Path) -> DiffusionPipeline:
    """The pipeline at ``path`` (safety checker off for SD); InputError for other classes or unreadable weights."""
    name = pipeline_class_name(path)
    if name not in SUPPORTED:
        raise InputError(f"{path}: unsupported pipeline class {name!r}; use one of {', '.join(SUPPORTED)}")
    try:
        if name == "DigitDiffusionPipeline":
            from t2i_poison.base_model import load_pipeline as load_base

            return load_base(Path(path))
        if name == "StableDiffusionXLPipeline":
            from diffusers import StableDiffusionXLPipeline

            return StableDiffusionXLPipeline.from_pretrained(path)
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    except InputError:
        raise
    except Exception as exc:  # safetensors, json, missing files: the libraries raise many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load the pipeline at {path} ({type(exc).__name__}: {first}); check its files") from None
