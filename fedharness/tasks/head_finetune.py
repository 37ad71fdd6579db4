"""Transfer learning on a frozen pretrained extractor: only the last layer is trained (Saha et al.'s
victim, ``feature_extract=True``), centrally or by federated clients.

The extractor is the lab's SmallCNN design up to its penultimate layer (``features``), with one more
conv block per doubling of the input side (:class:`ExtractorCNN`), pretrained on the digits that are
neither the attack's source nor its target (the federated task) or on all of them (the transfer
bench's default, as ImageNet held the paper's classes). The head is a new linear layer. :class:`HeadFineTuneTask` is the federated task where clients send the head only; its ASR is
the share of source-class test images carrying the hidden-trigger patch classified as the target.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedharness.attacks.hidden_trigger import Patch
from fedharness.tasks.image_classification import ImageClassificationTask
from fedharness.translate import random_translate
from labcore.errors import InputError


class ExtractorCNN(nn.Module):
    """SmallCNN's layers (conv(16)-GN-pool-ReLU, conv(32)-GN-pool-ReLU, fc(``feature_dim``), fc(classes))
    with ``blocks - 2`` more conv(32) blocks, so that a 56×56 input (3 blocks) reaches SmallCNN's 7×7 map."""

    def __init__(self, image_size: int = 28, num_classes: int = 10, channels: int = 1, blocks: int = 2,
                 feature_dim: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = [channels, 16] + [32] * (blocks - 1)
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.MaxPool2d(2), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Flatten())
        side = image_size // 2 ** blocks
        self.features = nn.Sequential(nn.Linear(32 * side * side, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.body(x)))


@dataclass
class PretrainConfig:
    """Adam(lr) for ``epochs`` over the images of every class not in ``exclude``; ``blocks`` conv blocks,
    a ``feature_dim``-wide penultimate layer."""

    epochs: int = 2
    lr: float = 2e-3
    batch_size: int = 64
    blocks: int = 2
    feature_dim: int = 64
    shift: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "blocks", "feature_dim"):
            if getattr(self, name) < 1:
                raise InputError(f"extractor pretraining {name} must be ≥ 1, got {getattr(self, name)}")
        if self.shift < 0:
            raise InputError(f"extractor pretraining shift must be ≥ 0 pixels, got {self.shift}")


def pretrain_extractor(x: torch.Tensor, y: torch.Tensor, exclude: tuple[int, ...], cfg: PretrainConfig,
                       seed: int) -> ExtractorCNN:
    """An :class:`ExtractorCNN` trained on the classes outside ``exclude``, then frozen (eval mode, no grad)."""
    keep = ~torch.isin(y, torch.as_tensor(exclude))
    if not bool(keep.any()):
        raise InputError("pretraining the extractor needs images of at least one class outside source/target")
    if x.shape[-1] // 2 ** cfg.blocks < 1:
        raise InputError(f"{cfg.blocks} pooling blocks do not fit {x.shape[-1]}-pixel images; use fewer blocks")
    xs, ys = x[keep], y[keep]
    torch.manual_seed(seed)
    model = ExtractorCNN(x.shape[-1], int(y.max()) + 1, x.shape[1], cfg.blocks, cfg.feature_dim)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(xs), generator=g).split(cfg.batch_size):
            loss = F.cross_entropy(model(random_translate(xs[idx], cfg.shift, g)), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.requires_grad_(False)
    return model


def extract(extractor: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate-layer features f(x) (``feature_dim``-d, after ReLU): the space Eq. 1 of Saha et al. collides in."""
    return extractor.features(extractor.body(x))


class ExtractorHead(nn.Module):
    """Frozen pretrained extractor + trainable linear head."""

    def __init__(self, extractor: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = nn.Linear(extractor.head.in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(extract(self.extractor, x))


@dataclass
class HeadFitConfig:
    """Full-batch L-BFGS on the cross-entropy plus ``l2``·‖W‖² (the fitted linear probe of a converged
    fine-tuning; a few SGD epochs leave the head underfit, treating a handful of poisons as noise)."""

    steps: int = 100
    l2: float = 1e-4


def fit_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: HeadFitConfig,
             seed: int) -> nn.Linear:
    """The last layer trained on fixed features."""
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=cfg.steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(features), labels) + cfg.l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head.requires_grad_(False)


@dataclass
class HeadFineTuneTask(ImageClassificationTask):
    """Clients fine-tune the head of ``extractor`` (shared, frozen); the backdoor is the hidden trigger
    ``patch`` on images of class ``source``, aimed at ``target_label``."""

    extractor: nn.Module | None = None
    patch: Patch | None = None
    source: int = 3
    random_location: bool = False

    def __post_init__(self) -> None:
        if self.extractor is None or self.patch is None:
            raise InputError("head_finetune needs a pretrained extractor and a hidden-trigger patch")
        if self.source == self.target_label:
            raise InputError("head_finetune: the hidden-trigger source class must differ from the target")

    def build_model(self) -> nn.Module:
        return ExtractorHead(self.extractor, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return extract(self.extractor, x)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """MTA on the test set; ASR on patched source test images (one patch placement per image)."""
        clean = self.predict(model, self.x_test)
        src = self.x_test[self.y_test == self.source]
        patched = self.patch.apply(src, self.random_location, torch.Generator().manual_seed(0))
        return {"main_accuracy": float((clean == self.y_test).float().mean()),
                "attack_success_rate": float((self.predict(model, patched) == self.target_label).float().mean())}


@dataclass
class HeadFineTuneConfig:
    """``task.params`` of the ``head_finetune`` federated task."""

    source: int = 3
    patch_size: int = 8
    pretrain_epochs: int = 2
    random_location: bool = False


def head_finetune_task(base: ImageClassificationTask, params: dict, seed: int) -> HeadFineTuneTask:
    """``base``'s data with an extractor pretrained on its training images outside {source, target}."""
    try:
        cfg = HeadFineTuneConfig(**params)
    except TypeError as exc:
        raise InputError(f"bad task.params for head_finetune: {exc}") from None
    if not 0 < cfg.patch_size < min(base.x_train.shape[-2:]):
        raise InputError(f"task.params.patch_size {cfg.patch_size} does not fit {tuple(base.x_train.shape[-2:])} images")
    extractor = pretrain_extractor(base.x_train, base.y_train, (cfg.source, base.target_label),
                                   PretrainConfig(epochs=cfg.pretrain_epochs), seed)
    patch = Patch.random(base.x_train.shape[1], cfg.patch_size, seed)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return HeadFineTuneTask(**fields, extractor=extractor, patch=patch, source=cfg.source,
                            random_location=cfg.random_location)
