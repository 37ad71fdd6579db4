"""Data for ``poisonlab unlearn``: image sets as tensors and the marked dataset folder (HF dataset,
``samples.jsonl``, card, metrics, report), written by ``unlearn mark`` and read by the other steps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk

from labcore.errors import InputError
from poisonlab import data
from poisonlab.report import Report
from poisonlab.runs import append_jsonl, write_json, write_text, write_yaml
from poisonlab.unlearn_report import marked_examples
from unlearning_verify.marking import MarkedSet

if TYPE_CHECKING:
    from fedharness.config import ExperimentConfig
    from unlearning_verify.fed_task import WatermarkTask

DATASET_CARD = """# Watermarked training set (poisonlab unlearn mark)

Source: `{data}` train split ({n} images). Owners: an IID split into {owners} shares (seed {seed}).
Owner {owner} marked {marked} of its {owned} samples with the `{family}` watermark (rate {rate}).

Columns: `image` (uint8 {side}×{side}), `label` (the label to train on: marked samples carry the owner's
target class), `original_label`, `owner`, `marked`. `samples.jsonl` lists the same metadata per row.
The owner's key is in a separate, owner-only key file and is not part of this dataset.

Invisibility of the marked images vs their originals: PSNR {psnr:.2f} dB, SSIM {ssim:.4f},
max |Δ| {maxd:.4f}.
"""


def image_data(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) of an image dataset of the registry."""
    ds = data.load(name)
    if "image" not in ds["train"].column_names:
        raise InputError(f"dataset {name!r} has no images; use mnist or digits")
    return (*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))


def load_marked(folder: Path) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """The marked dataset written by ``unlearn mark``: (rows, images, training labels)."""
    if not (Path(folder) / "dataset").is_dir():
        raise InputError(f"{folder} is not a marked dataset folder; pass the --out of 'poisonlab unlearn mark'")
    ds = load_from_disk(str(Path(folder) / "dataset"))["train"]
    x, y = data.image_tensors(ds)
    return ds, x, y


def owner_samples(folder: Path, owner: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The owner's unmarked samples of a marked dataset (for the membership check)."""
    ds, x, y = load_marked(folder)
    genuine = torch.as_tensor((np.asarray(ds["owner"]) == owner) & ~np.asarray(ds["marked"]))
    return x[genuine], y[genuine]


def _features(side: int, num_classes: int) -> Features:
    names = [str(i) for i in range(num_classes)]
    return Features({"image": Array2D(shape=(side, side), dtype="uint8"), "label": ClassLabel(names=names),
                     "original_label": ClassLabel(names=names), "owner": Value("int64"), "marked": Value("bool")})


def save_marked(stage: Path, marked: MarkedSet, x: torch.Tensor, watermark: object, meta: dict) -> dict:
    """Write the marked dataset folder; ``meta`` holds data, owner, owners, family, rate, seed."""
    side, num_classes = x.shape[-1], int(marked.original_y.max()) + 1
    rows = {"image": (marked.x[:, 0] * 255).round().to(torch.uint8).numpy(), "label": marked.y.numpy(),
            "original_label": marked.original_y.numpy(), "owner": marked.owner_of, "marked": marked.marked}
    DatasetDict(train=Dataset.from_dict(rows, features=_features(side, num_classes))).save_to_disk(str(stage / "dataset"))
    for i in range(len(x)):
        append_jsonl(stage / "samples.jsonl", {"index": i, "label": int(rows["label"][i]),
                                               "original_label": int(rows["original_label"][i]),
                                               "owner": int(marked.owner_of[i]), "marked": bool(marked.marked[i])})
    inv, owned = marked.invisibility, int((marked.owner_of == meta["owner"]).sum())
    write_text(stage / "README.md", DATASET_CARD.format(
        n=len(x), marked=int(marked.marked.sum()), owned=owned, side=side, psnr=inv["psnr"], ssim=inv["ssim"],
        maxd=inv["max_abs_change"], **meta))
    write_yaml(stage / "config.yaml", meta)
    metrics = {"marked": int(marked.marked.sum()), "owner_samples": owned, "invisibility": inv}
    write_json(stage / "metrics.json", metrics)
    report = Report(f"Watermark {meta['family']}: owner {meta['owner']}")
    report.table([{"family": meta["family"], "marked": metrics["marked"], **inv}], caption="Marking and invisibility")
    idx = torch.as_tensor(np.flatnonzero(marked.marked)[:4])
    marked_examples(report, {meta["family"]: watermark}, x[idx], "Original, marked, |Δ|×10")
    report.save(stage / "report.html")
    return metrics


def fed_task(cfg: "ExperimentConfig") -> "WatermarkTask":
    """Builder of the ``unlearning_watermark`` federated task (registered in ``poisonlab.fed_run.TASKS``)."""
    from unlearning_verify.fed_task import make_task

    if cfg.data.name not in ("mnist", "digits"):
        raise InputError(f"data.name {cfg.data.name!r} is not an image dataset; use mnist or digits")
    ds = data.load(cfg.data.name, cfg.data.path)
    return make_task(*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]), cfg)
