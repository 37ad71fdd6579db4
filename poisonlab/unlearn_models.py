"""Served models of the simulated providers on disk: ``config.json`` + ``model.safetensors``.

Kinds: ``smallcnn`` (the lab's SmallCNN), ``sisa`` (an ensemble of SmallCNN shard models),
``transform`` (a model behind an input purification) and ``detect`` (a model behind a query detector). Loaded with safetensors only (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from labcore.errors import InputError, first_line
from fedharness.tasks.image_classification import SmallCNN
from poisonlab.runs import write_json
from unlearning_verify.providers.input_transform import TransformedModel
from unlearning_verify.providers.query_detection import DetectingModel
from unlearning_verify.providers.sisa import Ensemble


def describe(model: nn.Module, shape: tuple[int, int, int], num_classes: int) -> dict:
    base = {"channels": shape[0], "image_size": shape[-1], "num_classes": num_classes}
    if isinstance(model, Ensemble):
        return {**base, "kind": "sisa", "members": len(model.members)}
    if isinstance(model, TransformedModel):
        return {**base, "kind": "transform", "transform": model.kind, "bits": model.bits, "quality": model.quality,
                "sigma": model.sigma, "inner": describe(model.model, shape, num_classes)}
    if isinstance(model, DetectingModel):
        return {**base, "kind": "detect", "response": model.response, "inner": describe(model.model, shape, num_classes)}
    return {**base, "kind": "smallcnn"}


def save_model(model: nn.Module, folder: Path, shape: tuple[int, int, int], num_classes: int,
               checkpoints: list[dict] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", describe(model, shape, num_classes))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    for i, c in enumerate(checkpoints or []):
        (folder / "checkpoints").mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in c.items()}, str(folder / "checkpoints" / f"epoch{i + 1}.safetensors"))


def _build(cfg: dict) -> nn.Module:
    kind = cfg.get("kind")
    if kind == "smallcnn":
        return SmallCNN(cfg["image_size"], cfg["num_classes"], cfg["channels"])
    if kind == "sisa":
        return Ensemble([SmallCNN(cfg["image_size"], cfg["num_classes"], cfg["channels"]) for _ in range(cfg["members"])])
    if kind == "transform":
        return TransformedModel(_build(cfg["inner"]), cfg["transform"], cfg["bits"], cfg["quality"], cfg.get("sigma", 0.8))
    if kind == "detect":
        return DetectingModel(_build(cfg["inner"]), cfg["response"])
    raise InputError(f"unknown model kind {kind!r} in config.json")


def load_model(folder: Path) -> tuple[nn.Module, dict, list[dict]]:
    """The model, its config, and its per-epoch checkpoints (if saved)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise InputError(f"{folder} is not a model folder (config.json + model.safetensors); "
                         "pass one written by 'poisonlab unlearn train' or 'unlearn delete'")
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        model = _build(cfg)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise InputError(f"cannot load the model in {folder}: {first_line(exc)}") from None
    ckpts = sorted((folder / "checkpoints").glob("epoch*.safetensors"), key=lambda p: int(p.stem[5:]))
    return model.eval(), cfg, [load_file(str(p)) for p in ckpts]
