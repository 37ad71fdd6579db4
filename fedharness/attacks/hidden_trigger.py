"""Hidden Trigger Backdoor Attack (Saha, Subramanya, Pirsiavash, AAAI 2020; arXiv 1910.00033).

Clean-label poisons for a transfer-learning victim (a fixed pretrained feature extractor f, only the
last layer trained on clean data plus the poisons). A poison z starts at a target-class image t and
moves into the feature-space neighbourhood of a source image s̃ carrying the secret patch (Eq. 1):

    min_z ‖f(z) − f(s̃)‖²₂   s.t.   ‖z − t‖_∞ ≤ ε,   z ∈ [0, 1]ᴰ

As in the official ``generate_poison.py``: batches of ``batch_size`` targets and patched sources (the
patch pasted at random places); every iteration re-pairs poisons with patched sources one-to-one by
feature distance (here the optimal assignment, ``scipy.optimize.linear_sum_assignment``, where the code
matches greedily), takes a plain gradient step on the summed pair losses, clips the perturbation to
±ε and the image to [0, 1]; lr halves every ``halve_every`` iterations; a batch stops when its largest
pair loss falls below ``stop_loss`` or after ``max_iterations``. ``optimizer`` picks the step from
:data:`OPTIMIZERS`: ``"sgd"`` is the paper's plain step; ``"sign"`` and ``"adam"`` are alternatives in
the same ε-ball. With ``random_location``, ``relocate_every`` > 0 pastes the patch at new places every that
many iterations (the official code draws new places once per pass over the data). Poisons keep their target
label and show no trigger; the trigger appears only at test time, on source images. The paper's trigger is a
random 4×4 grid of colours resized bilinearly (``TRIGGERS["grid"]``); ``"binary"`` draws black or white per
pixel.

The paper's control (``noise_poisons``) replaces the feature collision by uniform ε-noise on the same
target images. :class:`HiddenTrigger` is the federated client attack: the attacker holds target-class
images, crafts poisons against the task's shared pretrained extractor and trains on its data plus them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from fedharness.attacks import AttackContext, register
from labcore.errors import InputError

if TYPE_CHECKING:
    from fedharness.tasks.head_finetune import HeadFineTuneTask

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Optimizer:
    """How a batch's perturbation δ moves: a ``torch.optim`` optimiser on δ, fed ``transform(∂loss/∂δ)``."""

    make: Callable[[Iterable[torch.Tensor], float], torch.optim.Optimizer]
    transform: Callable[[torch.Tensor], torch.Tensor] = lambda grad: grad


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(lambda params, lr: torch.optim.SGD(params, lr=lr)),
    "sign": Optimizer(lambda params, lr: torch.optim.SGD(params, lr=lr), torch.sign),
    "adam": Optimizer(lambda params, lr: torch.optim.Adam(params, lr=lr)),
}
"""``sgd``: δ ← δ − lr·∇ (``generate_poison.py``); ``sign``: δ ← δ − lr·sign(∇) (projected sign gradient,
Madry et al. 2018), every step at the ε-ball's scale whatever the feature norms (lr in pixels, e.g.
ε/10); ``adam``: Adam's normalised step (lr in pixels too)."""


@dataclass
class HiddenTriggerConfig:
    """Poison generation. Paper defaults: ε = 16/255, lr 0.01 halved every 1000 iterations, ≤ 5000
    iterations, stop when max pair loss < 10, batches of 100, patch at random places, plain gradient
    steps. For ``sgd``, lr and ``stop_loss`` are in units of the extractor's squared feature norm (AlexNet
    fc7 there), so a smaller extractor needs its own."""

    eps: float = 16 / 255
    lr: float = 0.01
    halve_every: int = 1000
    max_iterations: int = 5000
    stop_loss: float = 10.0
    batch_size: int = 100
    random_location: bool = True
    relocate_every: int = 0
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if not 0.0 < self.eps <= 1.0:
            raise InputError(f"hidden trigger eps must lie in (0, 1], got {self.eps}; the paper uses 16/255")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown hidden trigger optimizer {self.optimizer!r}; "
                             f"choose one of: {', '.join(OPTIMIZERS)}")
        for name in ("lr", "stop_loss", "relocate_every"):
            if getattr(self, name) < 0:
                raise InputError(f"hidden trigger {name} must be ≥ 0, got {getattr(self, name)}")
        for name in ("halve_every", "max_iterations", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"hidden trigger {name} must be ≥ 1, got {getattr(self, name)}")


SMALL_EXTRACTOR = {"optimizer": "sign", "lr": 1.6 / 255, "max_iterations": 200, "halve_every": 66, "stop_loss": 0.0,
                   "random_location": False}
"""Settings for the lab's small extractors (64- or 128-d SmallCNN-like features): the pair loss plateaus
within ~200 sign steps of ε/10 (600 steps or Adam reach the same plateau); the plain step (``sgd``, lr 0.1
in these feature units) stops higher. The feature norms are far below AlexNet fc7's, so the paper's stop at 10 would never
trigger early; the patch sits at a fixed place."""


def small_extractor_config(**overrides: object) -> HiddenTriggerConfig:
    return HiddenTriggerConfig(**{**SMALL_EXTRACTOR, **overrides})


def grid_trigger(channels: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Saha et al. §4: a random 4×4 grid of colours (uniform in [0, 1]) resized to the patch by bilinear
    interpolation."""
    cells = torch.rand(1, channels, 4, 4, generator=g)
    return torch.nn.functional.interpolate(cells, size=(size, size), mode="bilinear", align_corners=False)[0]


def binary_trigger(channels: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A random black/white pattern, one draw per pixel (high frequency; not the paper's)."""
    return torch.randint(0, 2, (channels, size, size), generator=g).float()


TRIGGERS: dict[str, Callable[[int, int, torch.Generator], torch.Tensor]] = {"grid": grid_trigger,
                                                                             "binary": binary_trigger}


@dataclass
class Patch:
    """The secret trigger: a (C, s, s) pattern pasted at random places, or at (``top``, ``left``)
    (default: one pixel from the bottom-right corner)."""

    pattern: torch.Tensor
    top: int | None = None
    left: int | None = None

    @classmethod
    def random(cls, channels: int, size: int, seed: int, kind: str = "binary") -> "Patch":
        """A random pattern drawn by ``TRIGGERS[kind]`` (``grid`` is the paper's)."""
        if kind not in TRIGGERS:
            raise InputError(f"unknown trigger {kind!r}; choose one of: {', '.join(TRIGGERS)}")
        return cls(TRIGGERS[kind](channels, size, torch.Generator().manual_seed(seed)))

    @property
    def size(self) -> int:
        return int(self.pattern.shape[-1])

    def paste(self, x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        s = self.size
        for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist())):
            out[i, :, t:t + s, l:l + s] = self.pattern
        return out

    def apply(self, x: torch.Tensor, random_location: bool, g: torch.Generator) -> torch.Tensor:
        """The patch at a uniformly random place in each image (``rand_loc=true``), or one pixel from
        the bottom-right corner or the set place (``rand_loc=false``)."""
        h, w = x.shape[-2:]
        if self.size > min(h, w) - 1:
            raise InputError(f"a {self.size}×{self.size} patch does not fit {h}×{w} images; use a smaller patch")
        if random_location:
            tops = torch.randint(0, h - self.size + 1, (len(x),), generator=g)
            lefts = torch.randint(0, w - self.size + 1, (len(x),), generator=g)
        else:
            tops = torch.full((len(x),), h - self.size - 1 if self.top is None else self.top)
            lefts = torch.full((len(x),), w - self.size - 1 if self.left is None else self.left)
        return self.paste(x, tops, lefts)


def strongest_patch(features: FeatureFn, sources: torch.Tensor, channels: int, size: int, seed: int, kind: str,
                    draws: int, random_location: bool = False, clean: torch.Tensor | None = None) -> Patch:
    """Of ``draws`` random triggers (seeds ``seed``, ``seed + 1``, …), the one that moves the attacker's
    source images furthest in feature space (mean ‖f(s̃) − f(s)‖², the patch shift): the signal the
    fine-tuned head can tie to the target. It uses only what the paper's attacker holds (f and source
    images), not the victim's data, and no direction towards the target. ``clean``: ``features(sources)`` when the
    caller has it."""
    if draws == 1:  # nothing to rank: no feature passes
        return Patch.random(channels, size, seed, kind)
    with torch.no_grad():
        clean = features(sources) if clean is None else clean
        candidates = [Patch.random(channels, size, seed + k, kind) for k in range(draws)]
        shifts = [float((features(p.apply(sources, random_location, torch.Generator().manual_seed(seed)))
                         - clean).pow(2).sum(1).mean()) for p in candidates]
    return candidates[int(np.argmax(shifts))]


@dataclass
class TriggerDesign:
    """The attacker's own trigger (on by default: 71.7 % against 58.0 % ASR in the registered evaluation,
    README; ``steps`` 0 keeps the paper's random pattern): ``steps`` Adam steps (``lr``, on the pattern's
    logits, so that it stays in [0, 1]) over ``images`` of the attacker's source
    images, from the drawn pattern. A head is fitted on the attacker's clean source and target features
    (``head_steps`` L-BFGS steps, ``head_l2``)."""

    steps: int = 100
    lr: float = 0.1
    images: int = 200
    head_steps: int = 100
    head_l2: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("steps", "lr", "head_l2"):
            if getattr(self, name) < 0:
                raise InputError(f"trigger design {name} must be ≥ 0, got {getattr(self, name)}")
        for name in ("images", "head_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"trigger design {name} must be ≥ 1, got {getattr(self, name)}")


def orthogonal_shift(shift: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Mean ‖(I − ŵŵᵀ)·Δ‖² over rows Δ of ``shift``: the feature movement a head along ``direction`` ignores."""
    unit = direction / direction.norm()
    return (shift - (shift @ unit)[:, None] * unit).pow(2).sum(1).mean()


def designed_patch(features: FeatureFn, sources: torch.Tensor, targets: torch.Tensor, start: Patch,
                   design: TriggerDesign, random_location: bool, seed: int,
                   clean: tuple[torch.Tensor, torch.Tensor] | None = None) -> Patch:
    """A trigger that moves the source images' features far, but not towards the target by itself: the
    pattern maximising the patch shift orthogonal to the source-vs-target normal w of a head the attacker
    fits on its clean images (:func:`orthogonal_shift`). It uses what the paper's attacker holds (f, source
    and target images), not the victim's head. Why: over the development cells the patch shift
    ‖f(s̃) − f(s)‖², which a random trigger leaves to the extractor's untrained weights at the patch's
    place, ranked the ASR best (README). ``clean``: ``(features(sources), features(targets))`` when the caller
    has them."""
    from fedharness.tasks.head_finetune import HeadFitConfig, fit_head

    if not design.steps:
        return start
    g = torch.Generator().manual_seed(seed)
    batch = sources[torch.randperm(len(sources), generator=g)[: design.images]]
    with torch.no_grad():
        clean_src, clean_tgt = (features(sources), features(targets)) if clean is None else clean
        labels = torch.cat([torch.zeros(len(clean_src)), torch.ones(len(clean_tgt))]).long()
        fit = HeadFitConfig(design.head_steps, design.head_l2)
        head = fit_head(torch.cat([clean_src, clean_tgt]), labels, 2, fit, seed)
        normal, clean_batch = head.weight[1] - head.weight[0], features(batch)
    logits = torch.logit(start.pattern.clamp(0.05, 0.95)).requires_grad_(True)
    opt, places = torch.optim.Adam([logits], lr=design.lr), torch.Generator().manual_seed(seed)
    for _ in range(design.steps):
        patch = Patch(torch.sigmoid(logits), start.top, start.left)
        placed = patch.apply(batch, random_location, places)
        loss = -orthogonal_shift(features(placed) - clean_batch, normal)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return Patch(torch.sigmoid(logits).detach(), start.top, start.left)


@dataclass
class Collision:
    """Poisons and their labels (the targets', unchanged), plus the optimisation trace."""

    poisons: torch.Tensor
    labels: torch.Tensor
    mean_loss: list[list[float]] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)


def pair(poison_feats: torch.Tensor, source_feats: torch.Tensor) -> np.ndarray:
    """Column (source) paired with each poison row: a one-to-one minimum-cost assignment on cdist."""
    cost = torch.cdist(poison_feats, source_feats).numpy()
    rows, cols = linear_sum_assignment(cost)
    paired = np.empty(len(rows), dtype=np.int64)
    paired[rows] = cols
    return paired


def collide_batch(features: FeatureFn, base: torch.Tensor, patched: torch.Tensor | Callable[[], torch.Tensor],
                  cfg: HiddenTriggerConfig) -> tuple[torch.Tensor, list[float]]:
    """One batch of Eq. 1 by projected descent (``cfg.optimizer``'s step, then δ clipped to ±ε and
    t + δ to [0, 1]); returns poisons and mean pair loss per iteration. ``patched``: the patched
    sources, or a draw of them (new patch places) made every ``cfg.relocate_every`` iterations."""
    draw = patched if callable(patched) else (lambda: patched)
    delta = torch.zeros_like(base, requires_grad=True)
    step = OPTIMIZERS[cfg.optimizer]
    opt = step.make([delta], cfg.lr)
    schedule = torch.optim.lr_scheduler.StepLR(opt, cfg.halve_every, gamma=0.5)
    trace: list[float] = []
    for i in range(cfg.max_iterations):
        if i == 0 or (cfg.random_location and cfg.relocate_every and i % cfg.relocate_every == 0):
            with torch.no_grad():
                src = features(draw())
        feats = features(base + delta)
        cols = pair(feats.detach(), src)
        per_pair = ((feats - src[torch.as_tensor(cols)]) ** 2).sum(dim=1)
        trace.append(float(per_pair.detach().mean()))
        if float(per_pair.detach().max()) < cfg.stop_loss:
            break
        opt.zero_grad()
        per_pair.sum().backward()
        delta.grad = step.transform(delta.grad)
        opt.step()
        schedule.step()
        with torch.no_grad():
            delta.copy_((base + delta.clamp(-cfg.eps, cfg.eps)).clamp(0, 1) - base)
    return (base + delta).detach(), trace


def generate(features: FeatureFn, targets: torch.Tensor, target_labels: torch.Tensor, sources: torch.Tensor,
             patch: Patch, cfg: HiddenTriggerConfig, seed: int) -> Collision:
    """Poisons from every image of ``targets``, each batch against as many fresh patched ``sources``."""
    if not len(targets) or not len(sources):
        raise InputError("hidden trigger needs at least one target image and one source image")
    g = torch.Generator().manual_seed(seed)
    out = Collision(torch.empty_like(targets), target_labels.clone())
    for start in range(0, len(targets), cfg.batch_size):
        base = targets[start:start + cfg.batch_size]
        pick = torch.randperm(len(sources), generator=g)[: len(base)]
        if len(pick) < len(base):
            pick = torch.randint(0, len(sources), (len(base),), generator=g)
        chosen = sources[pick]
        poisons, trace = collide_batch(features, base, lambda: patch.apply(chosen, cfg.random_location, g), cfg)
        out.poisons[start:start + len(base)] = poisons
        out.mean_loss.append(trace)
        out.iterations.append(len(trace))
    return out


def noise_poisons(targets: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """The paper's control: target images plus uniform noise in [−ε, ε], clamped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(targets.shape, generator=g) * 2 - 1) * eps
    return (targets + noise).clamp(0, 1)


def random_bases(target_feats: torch.Tensor, patched_feats: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """The paper's choice: ``n`` target images at random."""
    return torch.randperm(len(target_feats), generator=g)[:n]


def nearest_bases(target_feats: torch.Tensor, patched_feats: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """The ``n`` target images whose features lie nearest the patched sources' mean: the attacker spends
    its ε-budget on the target images that start closest to the collision."""
    return ((target_feats - patched_feats.mean(0)) ** 2).sum(1).argsort()[:n]


BASES: dict[str, Callable[[torch.Tensor, torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "random": random_bases, "nearest": nearest_bases}


@dataclass
class TransferConfig:
    """The centralised transfer-learning experiment: images upsampled (bilinear) to ``image_size``; an
    extractor with ``blocks`` conv blocks pretrained on the training images of ``pretrain_classes``
    ("all": every digit, as AlexNet was pretrained on ImageNet, source and target classes included;
    "others": only the digits outside {source, target}); ``poisons``
    target-class training images, chosen by ``bases`` (:data:`BASES`), replaced in the training set by
    their poisons (or by the noise control); the last layer fitted on ``classes`` ("pair": source vs
    target, the paper's binary tasks; "all": every class). ``feature_dim`` is the width of the extractor's
    penultimate layer, the space the poisons collide in. ``pretrain_shift``: the pretraining moves every
    image by up to that many pixels (ImageNet's random crops at MNIST's scale), so that the extractor sees
    strokes at the patch's place (off: 4 px lowered the registered ASR, README). ``trigger``
    (:data:`TRIGGERS`) and ``trigger_draws`` (:func:`strongest_patch`) choose the patch pattern, which
    ``trigger_design`` (:func:`designed_patch`) then optimises."""

    source: int = 3
    target: int = 8
    poisons: int = 77
    patch_size: int = 10
    classes: str = "pair"
    attack: HiddenTriggerConfig = field(default_factory=small_extractor_config)
    image_size: int = 28
    blocks: int = 2
    feature_dim: int = 128
    bases: str = "nearest"
    pretrain_classes: str = "all"
    pretrain_epochs: int = 2
    pretrain_shift: int = 0
    trigger: str = "binary"
    trigger_draws: int = 1
    trigger_design: TriggerDesign = field(default_factory=TriggerDesign)
    head_steps: int = 300
    head_l2: float = 1e-6

    def __post_init__(self) -> None:
        if self.source == self.target:
            raise InputError("hidden trigger source and target classes must differ")
        if self.classes not in ("pair", "all"):
            raise InputError(f"classes must be 'pair' or 'all', got {self.classes!r}")
        if self.pretrain_classes not in ("all", "others"):
            raise InputError(f"pretrain_classes must be 'all' or 'others', got {self.pretrain_classes!r}")
        if self.bases not in BASES:
            raise InputError(f"unknown bases {self.bases!r}; choose one of: {', '.join(BASES)}")
        if self.poisons < 1:
            raise InputError(f"poisons must be ≥ 1, got {self.poisons}")
        if self.trigger_draws < 1:
            raise InputError(f"trigger_draws must be ≥ 1, got {self.trigger_draws}")
        if self.image_size < 8:
            raise InputError(f"image_size must be ≥ 8 pixels, got {self.image_size}")


@dataclass
class VictimScores:
    clean_accuracy: float
    attack_success_rate: float
    source_as_target: float


@dataclass
class TransferResult:
    """The three victims of one seed: clean model, hidden-trigger poisons, noise control. The pair loss
    (mean ‖f(z) − f(s̃)‖² over pairs) is to be read against ``patch_shift`` (mean ‖f(s̃) − f(s)‖²: how far
    the patch moves a source image's features) and ``source_target_gap`` (mean squared distance from a
    clean source image's features to the nearest target image's)."""

    clean: VictimScores
    hidden_trigger: VictimScores
    noise: VictimScores
    target_train_images: int
    pair_loss_start: float
    pair_loss_end: float
    patch_shift: float
    source_target_gap: float
    iterations: int
    max_perturbation: float


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """Images brought to ``side``×``side`` by bilinear interpolation (unchanged at their own size)."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)


def run_transfer(x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, cfg: TransferConfig,
                 seed: int) -> TransferResult:
    """Poison generation and the fine-tuned victims (Saha et al. §4, on the lab's data)."""
    from fedharness.tasks.head_finetune import PretrainConfig, extract, pretrain_extractor

    target_idx = torch.nonzero(y == cfg.target).flatten()
    if cfg.poisons > len(target_idx):
        raise InputError(f"{cfg.poisons} poisons asked, but class {cfg.target} has {len(target_idx)} training images")
    x, xt = resize(x, cfg.image_size), resize(xt, cfg.image_size)
    exclude = (cfg.source, cfg.target) if cfg.pretrain_classes == "others" else ()
    pretrain = PretrainConfig(epochs=cfg.pretrain_epochs, blocks=cfg.blocks, feature_dim=cfg.feature_dim,
                              shift=cfg.pretrain_shift)
    extractor = pretrain_extractor(x, y, exclude, pretrain, seed)
    features = lambda z: extract(extractor, z)
    sources = x[y == cfg.source]
    with torch.no_grad():
        target_feats, source_feats = features(x[target_idx]), features(sources)
    patch = strongest_patch(features, sources, x.shape[1], cfg.patch_size, seed, cfg.trigger, cfg.trigger_draws,
                            cfg.attack.random_location, clean=source_feats)
    patch = designed_patch(features, sources, x[target_idx], patch, cfg.trigger_design, cfg.attack.random_location,
                           seed, clean=(source_feats, target_feats))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        patched_feats = features(patch.apply(sources, cfg.attack.random_location, torch.Generator().manual_seed(seed)))
        base = target_idx[BASES[cfg.bases](target_feats, patched_feats, cfg.poisons, g)]
    collision = generate(features, x[base], y[base], sources, patch, cfg.attack, seed)
    victim = victims(features, x, y, xt, yt, cfg, patch, seed)
    return TransferResult(
        victim(base, None), victim(base, collision.poisons), victim(base, noise_poisons(x[base], cfg.attack.eps, seed)),
        len(target_idx),
        pair_loss_start=sum(t[0] for t in collision.mean_loss) / len(collision.mean_loss),
        pair_loss_end=sum(t[-1] for t in collision.mean_loss) / len(collision.mean_loss),
        patch_shift=float((patched_feats - source_feats).pow(2).sum(1).mean()),
        source_target_gap=float(torch.cdist(source_feats, target_feats).pow(2).min(1).values.mean()),
        iterations=max(collision.iterations),
        max_perturbation=float((collision.poisons - x[base]).abs().max()),
    )


def victims(features: FeatureFn, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor,
            cfg: TransferConfig, patch: Patch,
            seed: int) -> Callable[[torch.Tensor, torch.Tensor | None], VictimScores]:
    """Scores of a last layer fitted on the training set whose images at ``base`` (indices into ``x``)
    are replaced by ``images`` (poisons, noise control) or kept (``None``: the clean model)."""
    from fedharness.tasks.head_finetune import HeadFitConfig, fit_head

    keep = (y == cfg.source) | (y == cfg.target) if cfg.classes == "pair" else torch.ones_like(y, dtype=torch.bool)
    keep_t = (yt == cfg.source) | (yt == cfg.target) if cfg.classes == "pair" else torch.ones_like(yt, dtype=torch.bool)
    with torch.no_grad():
        f_all, f_test = features(x[keep]), features(xt[keep_t])
        src_test = xt[yt == cfg.source]
        f_patched = features(patch.apply(src_test, cfg.attack.random_location, torch.Generator().manual_seed(seed + 1)))
        f_src = features(src_test)
    row = torch.cumsum(keep.long(), 0) - 1  # index into x[keep]
    fit = HeadFitConfig(cfg.head_steps, cfg.head_l2)
    classes = int(max(y.max(), yt.max())) + 1

    def victim(base: torch.Tensor, images: torch.Tensor | None) -> VictimScores:
        feats = f_all.clone()
        if images is not None:
            with torch.no_grad():
                feats[row[base]] = features(images)
        head = fit_head(feats, y[keep], classes, fit, seed)
        with torch.no_grad():
            acc = float((head(f_test).argmax(1) == yt[keep_t]).float().mean())
            asr = float((head(f_patched).argmax(1) == cfg.target).float().mean())
            plain = float((head(f_src).argmax(1) == cfg.target).float().mean())
        return VictimScores(acc, asr, plain)

    return victim


@register("hidden_trigger")
@dataclass
class HiddenTrigger:
    """Federated client attack on a head-fine-tuning task (``head_finetune``): each attacker turns up to
    ``poisons`` of its target-class images into hidden-trigger poisons against the task's shared
    extractor (made once, on first use) and trains honestly on its data plus them. ``generation``
    overrides :data:`SMALL_EXTRACTOR`."""

    poisons: int = 50
    generation: dict = field(default_factory=dict)
    knowledge: str = "own"
    made: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.poisons < 1:
            raise InputError(f"hidden_trigger poisons must be >= 1, got {self.poisons}")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        task = ctx.task
        if not all(hasattr(task, a) for a in ("features", "patch", "source")):
            raise InputError("the hidden_trigger attack needs a head_finetune task (a shared pretrained extractor)")
        cfg = small_extractor_config(**{**self.generation, "random_location": task.random_location})
        data = []
        for cid, d, seed in zip(ctx.attacker_ids or range(len(ctx.attacker_data)), ctx.attacker_data,
                                ctx.attacker_seeds):
            if cid not in self.made:
                self.made[cid] = self.craft(task, d, cfg, seed)
            px, py = self.made[cid]
            data.append({"x": torch.cat([d["x"], px]), "y": torch.cat([d["y"], py])})
        return ctx.engine.train(ctx.global_vec, data, ctx.local, ctx.attacker_seeds)

    def craft(self, task: HeadFineTuneTask, d: dict, cfg: HiddenTriggerConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        targets, sources = d["x"][d["y"] == task.target_label][: self.poisons], d["x"][d["y"] == task.source]
        if not len(targets) or not len(sources):
            raise InputError(f"a hidden_trigger attacker needs images of target class {task.target_label} "
                             f"and source class {task.source}; give it more data")
        out = generate(task.features, targets, d["y"][d["y"] == task.target_label][: self.poisons], sources,
                       task.patch, cfg, seed)
        return out.poisons, out.labels
