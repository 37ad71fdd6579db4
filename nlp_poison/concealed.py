"""Concealed data poisoning (Wallace, Zhao, Feng, Singh, NAACL 2021): a bilevel token search.

Objective (paper §2, one-step unroll as in MetaPoison):

    min_{D_p}  L_adv(D_adv; θ'),    θ' = θ − α · ∇_θ L_train(D_clean ∪ D_p; θ)

over a parameter scope θ: the top ``scope_layers`` encoder layers (all of them by default, so the
step reaches the token-level representations that carry the phrase) plus the BERT pooler and the
classifier. L_train is the mean cross-entropy over one batch holding the poisons (label = target)
and ``clean_batch`` clean training sentences; L_adv is the cross-entropy of trigger-bearing
negatives towards the target plus ``negative_weight`` × that of the same sentences without the
phrase towards their true label, so the search cannot win by merely biasing the model positive.
With ``contrast`` it is the paired margin mean_j [m(x_j) − m(x_j ⊕ phrase)], m = target − other
logit: any change that moves a sentence and its phrase-bearing twin alike cancels, leaving only the
phrase's own effect.

Start (paper: "start from the with-overlap poisons and replace the trigger-phrase tokens"): every
sub-token of the phrase becomes its nearest placeable token in input-embedding space
(``baselines.nearest_fill``); ``init="random"`` starts from the random control instead.

Token step (HotFlip, as in universal-triggers): with g_i = ∇_{e_i} L_adv(θ') — a second-order
gradient, −α/B · (∂²L_train/∂e_i∂θ) ∇_θ' L_adv, computed by double backprop — each placeable
token v at edited position i scores (E_v − e_i)ᵀ g_i. The ``top_k`` lowest are re-scored by the
unrolled loss to first order in the swap, L_adv(θ') − (α/B)⟨∇_θ' L_adv, ∇_θ ℓ_cand − ∇_θ ℓ_cur⟩,
whose inner products come from one forward-mode pass over all candidates (exact per-candidate
unrolls would need one adversarial forward per candidate). Each poison's best candidate that
passes the concealment checks is proposed; the proposals are kept only if the exact unrolled loss
falls (else the better half is tried, and so on), so the reported objective never rises. With
``shared`` one edit goes into every poison (the poisons' scores summed, as universal triggers average
the batch gradient) and each of the ``top_k`` candidates is re-scored by the exact unrolled loss;
``neighbours`` limits each edited slot to that many nearest tokens of the sub-token it replaces.

Ensemble (MetaPoison, Huang et al. 2020, §3.2; Witches' Brew, Geiping et al. 2021): with several
surrogates (e.g. fine-tuned from different seeds) the objective is the mean of their unrolled losses,
and the HotFlip and first-order scores the mean of theirs, so an edit must work on every surrogate
rather than exploit one; candidates and neighbourhoods come from the first surrogate's embeddings.

Feature collision (``collision`` > 0; Shafahi et al. 2018, ``collision.py``): the search lowers
L_adv(θ') + w·D, D the distance between each poison's hidden states and those of its with-overlap
twin on the pretrained checkpoint the victims fine-tune from. The unrolled loss alone, measured on
fine-tuned surrogates, preferred second- to fifth-nearest tokens that flipped fewer fresh victims
than the search's own start; D ranks the same proxies the way the victims do, and its gradient
joins the HotFlip score, its exact value the re-scoring.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from labcore.errors import InputError
from nlp_poison.baselines import NEAREST_TRIES, Template, nearest_fill, nearest_table, phrase_ids, place, random_fill
from nlp_poison.collision import FeatureCollision
from nlp_poison.config import ConcealedConfig
from nlp_poison.constraints import NeighbourIndex, Rule, constrain
from nlp_poison.overlap import token_text
from nlp_poison.poison_set import Poison
from nlp_poison.tokens import Encoded, pad

Params = dict[str, torch.Tensor]


def _run_layers(layers: nn.ModuleList, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
    for layer in layers:
        hidden = layer(hidden, additive)
    return hidden


class Head(nn.Module):
    """Top ``layers`` encoder layers (``None``: all), pooler and classifier of a BERT-family classifier."""

    def __init__(self, model: nn.Module, layers: int | None) -> None:
        super().__init__()
        base = getattr(model, "base_model", None)
        if getattr(base, "pooler", None) is None or not hasattr(model, "classifier") or not hasattr(base, "encoder"):
            raise InputError(
                f"{type(model).__name__} is not a BERT-family classifier with a pooler; use a BERT-style surrogate (e.g. MiniLM)"
            )
        stack = base.encoder.layer
        layers = len(stack) if layers is None else layers
        if layers > len(stack):
            raise InputError(f"scope_layers={layers} exceeds the model's {len(stack)} layers")
        self.body = nn.ModuleList(list(stack)[: len(stack) - layers])
        self.layers = nn.ModuleList(list(stack)[len(stack) - layers :])
        self.embeddings = base.embeddings
        self.pooler = base.pooler
        self.classifier = model.classifier

    def features(self, ids: torch.Tensor, mask: torch.Tensor, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states entering the scope (constant in θ): embeddings and the layers below it."""
        hidden = self.embeddings(input_ids=None if embeds is not None else ids, inputs_embeds=embeds)
        return _run_layers(self.body, hidden, mask)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooler(_run_layers(self.layers, hidden, mask)))


class UnrolledObjective:
    """L_adv(D_adv; θ − (α/B)(G_clean + G_poison)) over the head scope; G are summed gradients."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        adv_texts: list[str],
        free_texts: list[str],
        free_labels: list[int],
        clean_texts: list[str],
        clean_labels: list[int],
        num_poisons: int,
        cfg: ConcealedConfig,
    ) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.cfg = model, cfg
        self.pad_id = tokenizer.pad_token_id
        self.head = Head(model, cfg.scope_layers)
        self.theta = {k: v.detach() for k, v in self.head.named_parameters() if not k.startswith(("body.", "embeddings."))}
        self.batch_size = num_poisons + len(clean_texts)
        encode = lambda texts: pad(tokenizer(list(texts))["input_ids"], self.pad_id)
        with torch.no_grad():
            self.adv = self._features_of(encode(adv_texts)) if adv_texts else None
            self.free = self._features_of(encode(free_texts)) if free_texts else None
        self.adv_y = torch.full((len(adv_texts),), cfg.target, dtype=torch.long)
        self.free_y = torch.tensor(list(free_labels), dtype=torch.long)
        clean_y = torch.tensor(list(clean_labels), dtype=torch.long)
        self.g_clean = self.gradient(encode(clean_texts), clean_y)
        self.precond = self._adam_preconditioner(clean_texts, clean_y, encode) if cfg.adam else None

    def _adam_preconditioner(self, texts: list[str], y: torch.Tensor, encode) -> Params:
        squares = {k: torch.zeros_like(v) for k, v in self.theta.items()}
        starts = range(0, len(texts), 32)
        for s in starts:
            g = self.gradient(encode(texts[s : s + 32]), y[s : s + 32])
            for k in squares:
                squares[k] += (g[k] / len(y[s : s + 32])) ** 2
        inv = {k: 1.0 / ((v / len(starts)).sqrt() + 1e-8) for k, v in squares.items()}
        mean = torch.cat([v.flatten() for v in inv.values()]).mean()
        return {k: v / mean for k, v in inv.items()}

    def preconditioned(self, direction: Params) -> Params:
        """P·direction (identity without ``adam``): the unrolled step's metric."""
        return direction if self.precond is None else {k: self.precond[k] * v for k, v in direction.items()}

    def _features_of(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.features(enc.ids, enc.mask), enc.mask

    def logits(self, params: Params, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return functional_call(self.head, params, (hidden, mask), strict=False)

    def gradient(self, enc: Encoded, y: torch.Tensor) -> Params:
        """∇_θ Σ_i ℓ_i (summed over the batch, in chunks)."""
        total = {k: torch.zeros_like(v) for k, v in self.theta.items()}
        for s in range(0, len(y), self.cfg.chunk):
            part = Encoded(enc.ids[s : s + self.cfg.chunk], enc.mask[s : s + self.cfg.chunk])
            with torch.no_grad():
                hidden = self.head.features(part.ids, part.mask)
            params = {k: v.detach().requires_grad_(True) for k, v in self.theta.items()}
            loss = F.cross_entropy(self.logits(params, hidden, part.mask), y[s : s + self.cfg.chunk], reduction="sum")
            for k, g in zip(params, torch.autograd.grad(loss, list(params.values()))):
                total[k] += g
        return total

    def poison_gradient(self, rows: list[list[int]]) -> Params:
        """∇_θ of the poisons' summed training loss (label = target)."""
        return self.gradient(pad(rows, self.pad_id), torch.full((len(rows),), self.cfg.target, dtype=torch.long))

    def unrolled(self, g_poison: Params) -> Params:
        """θ' for a poison-gradient sum."""
        step = self.cfg.unroll_lr / self.batch_size
        update = self.preconditioned({k: self.g_clean[k] + g_poison[k] for k in self.theta})
        return {k: v - step * update[k] for k, v in self.theta.items()}

    def adv_loss(self, params: Params) -> torch.Tensor:
        if self.cfg.contrast:
            return (self._margin(params, self.free) - self._margin(params, self.adv)).mean()
        loss = torch.zeros(())
        if self.adv is not None:
            loss = loss + F.cross_entropy(self.logits(params, *self.adv), self.adv_y)
        if self.free is not None and self.cfg.negative_weight > 0:
            loss = loss + self.cfg.negative_weight * F.cross_entropy(self.logits(params, *self.free), self.free_y)
        return loss

    def _margin(self, params: Params, features: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Target-minus-other logit of each sentence."""
        logits = self.logits(params, *features)
        return logits[:, self.cfg.target] - logits[:, 1 - self.cfg.target]

    def value(self, g_poison: Params) -> float:
        with torch.no_grad():
            return float(self.adv_loss(self.unrolled(g_poison)))

    def adv_gradient(self, g_poison: Params) -> Params:
        """∇_θ' L_adv(θ')."""
        prime = {k: v.detach().requires_grad_(True) for k, v in self.unrolled(g_poison).items()}
        return dict(zip(prime, torch.autograd.grad(self.adv_loss(prime), list(prime.values()))))

    def embedding_gradient(self, poisons: Encoded, adv_grad: Params) -> torch.Tensor:
        """∇_e L_adv(θ') for every poison token embedding (double backprop through ∇_θ L_train)."""
        embeds = self.model.get_input_embeddings()(poisons.ids).detach().requires_grad_(True)
        params = {k: v.detach().requires_grad_(True) for k, v in self.theta.items()}
        hidden = self.head.features(poisons.ids, poisons.mask, embeds)
        y = torch.full((len(poisons.ids),), self.cfg.target, dtype=torch.long)
        loss = F.cross_entropy(self.logits(params, hidden, poisons.mask), y, reduction="sum")
        train_grad = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        dot = sum((g * adv_grad[k]).sum() for k, g in zip(params, train_grad))
        (ge,) = torch.autograd.grad(dot, embeds)
        return -(self.cfg.unroll_lr / self.batch_size) * ge

    def alignment(self, rows: list[list[int]], direction: Params) -> torch.Tensor:
        """⟨∇_θ ℓ_r(θ), direction⟩ for every row r (training loss towards the target), by forward-mode AD."""
        out = []
        for s in range(0, len(rows), self.cfg.chunk):
            enc = pad(rows[s : s + self.cfg.chunk], self.pad_id)
            y = torch.full((len(enc.ids),), self.cfg.target, dtype=torch.long)
            with torch.no_grad():
                hidden = self.head.features(enc.ids, enc.mask)
            per_row = lambda p: F.cross_entropy(self.logits(p, hidden, enc.mask), y, reduction="none")
            out.append(jvp(per_row, (self.theta,), (direction,))[1].detach())
        return torch.cat(out)

class EnsembleObjective:
    """The mean of several surrogates' unrolled objectives; per-surrogate quantities travel as lists."""

    def __init__(self, members: list[UnrolledObjective]) -> None:
        if not members:
            raise InputError("an ensemble needs at least one surrogate")
        self.members = members
        self.cfg, self.pad_id, self.batch_size = members[0].cfg, members[0].pad_id, members[0].batch_size

    def poison_gradient(self, rows: list[list[int]]) -> list[Params]:
        return [m.poison_gradient(rows) for m in self.members]

    def value(self, g_poison: list[Params]) -> float:
        return float(np.mean([m.value(g) for m, g in zip(self.members, g_poison)]))

    def adv_gradient(self, g_poison: list[Params]) -> list[Params]:
        return [m.adv_gradient(g) for m, g in zip(self.members, g_poison)]

    def preconditioned(self, direction: list[Params]) -> list[Params]:
        return [m.preconditioned(d) for m, d in zip(self.members, direction)]

    def embedding_gradient(self, poisons: Encoded, adv_grad: list[Params]) -> torch.Tensor:
        return sum(m.embedding_gradient(poisons, d) for m, d in zip(self.members, adv_grad)) / len(self.members)

    def alignment(self, rows: list[list[int]], direction: list[Params]) -> torch.Tensor:
        return sum(m.alignment(rows, d) for m, d in zip(self.members, direction)) / len(self.members)


@dataclass
class Evaluation:
    """The search objective at one set of poison rows: the surrogates' poison gradients (reused for the next
    directions), the objective, and the collision distance D alone (None without the collision term)."""

    g_poison: list[Params]
    loss: float
    distance: float | None


class SearchObjective:
    """What the token search lowers: the ensemble's unrolled loss plus ``weight`` × the feature collision
    distance to the with-overlap twins on the victims' pretrained encoder (``collision``; none: weight 0)."""

    def __init__(self, bilevel: EnsembleObjective, collision: FeatureCollision | None = None, weight: float = 0.0) -> None:
        self.bilevel, self.collision, self.weight = bilevel, collision, weight if collision is not None else 0.0
        self.cfg, self.pad_id, self.batch_size = bilevel.cfg, bilevel.pad_id, bilevel.batch_size

    def evaluate(self, rows: list[list[int]]) -> Evaluation:
        g = self.bilevel.poison_gradient(rows)
        loss = self.bilevel.value(g)
        if not self.weight:
            return Evaluation(g, loss, None)
        distance = self.collision.value(rows)
        return Evaluation(g, loss + self.weight * distance, distance)

    def directions(self, rows: list[list[int]], g_poison: list[Params]) -> tuple[torch.Tensor, list[Params]]:
        """∇_e of the objective for every poison token (HotFlip) and the preconditioned ∇_θ' L_adv."""
        adv_grad = self.bilevel.preconditioned(self.bilevel.adv_gradient(g_poison))
        grad_e = self.bilevel.embedding_gradient(pad(rows, self.pad_id), adv_grad)
        if self.weight:
            grad_e = grad_e + self.weight * self.collision.embedding_gradient(rows)
        return grad_e, adv_grad

    def first_order_gains(self, cand_rows: list[list[int]], owners: list[int], rows: list[list[int]], adv_grad: list[Params]) -> torch.Tensor:
        """Change of the objective when poison ``owners[j]`` becomes ``cand_rows[j]``: to first order in the
        unrolled loss, L_adv(θ') − (α/B)⟨∇_θ' L_adv, ∇_θ ℓ_cand − ∇_θ ℓ_cur⟩, exactly in the collision term."""
        step = self.cfg.unroll_lr / self.batch_size
        gains = -step * (self.bilevel.alignment(cand_rows, adv_grad) - self.bilevel.alignment(rows, adv_grad)[owners])
        if self.weight:
            gains = gains + self.weight * (self.collision.per_row(cand_rows, owners) - self.collision.per_row(rows)[owners])
        return gains


Step = tuple[list[list[int]], list[list[int]], Evaluation]


class _Search:
    """Candidate generation and acceptance for the token search over fixed templates and edited positions.

    Each edited slot replaces one sub-token of the phrase; ``neighbours`` (when set) restricts the slot to
    that many nearest placeable tokens of the sub-token it replaces (the first entries of its ``table`` row).
    Every candidate sentence must pass ``rule`` (the concealment constraints) to be proposed.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, templates: list[Template], phrase: str, positions: list[list[int]],
                 placeable: list[int], emb: torch.Tensor, table: dict[int, list[int]], neighbours: int | None, rule: Rule) -> None:
        self.tokenizer, self.templates, self.phrase, self.positions, self.emb = tokenizer, templates, phrase, positions, emb
        self.rule = rule
        allowed = torch.zeros(emb.shape[0], dtype=torch.bool)
        allowed[placeable] = True
        masks = dict.fromkeys(table, allowed)
        if neighbours is not None:
            for tid, near in table.items():
                masks[tid] = torch.zeros_like(allowed)
                masks[tid][near[:neighbours]] = True
        self.masks = [[masks[tid] for tid in phrase_ids(t, tokenizer)] for t in templates]

    def write(self, p: int, edits: list[int]) -> list[int] | None:
        """Token ids of poison ``p`` with ``edits`` written in, or None if the sentence does not reproduce
        them at the poison's edited positions, mentions a content word of the phrase or breaks the rule."""
        placed = place(self.templates[p], self.tokenizer, edits, self.phrase, self.rule)
        return placed[0] if placed is not None and placed[2] == self.positions[p] else None

    def write_all(self, edits: list[list[int]]) -> list[list[int]] | None:
        rows = [self.write(p, e) for p, e in enumerate(edits)]
        return None if any(r is None for r in rows) else rows

    def _top(self, g: torch.Tensor, current: int, mask: torch.Tensor, k: int) -> list[int]:
        """HotFlip: the k tokens v with the lowest (E_v − e_cur)ᵀ g inside ``mask``."""
        scores = self.emb @ g - self.emb[current] @ g
        scores[~mask] = float("inf")
        scores[current] = float("inf")
        return torch.topk(-scores, min(k, int(mask.sum()) - int(mask[current]))).indices.tolist()

    def per_poison_step(self, objective: SearchObjective, it: int, rows: list[list[int]], edits: list[list[int]],
                        grad_e: torch.Tensor, adv_grad: list[Params], current: float, k: int) -> Step | None:
        """Each poison proposes its best first-order candidate at its slot ``it mod len``; the proposals are
        kept if the exact unrolled loss falls, else the better half is tried, and so on."""
        cand_rows, cand_owner, cand_edits = [], [], []
        for p in range(len(rows)):
            slot = it % len(self.positions[p])
            pos = self.positions[p][slot]
            for v in self._top(grad_e[p, pos], rows[p][pos], self.masks[p][slot], k):
                r = list(rows[p])
                r[pos] = v
                e = list(edits[p])
                e[slot] = v
                cand_rows.append(r)
                cand_owner.append(p)
                cand_edits.append(e)
        gains = objective.first_order_gains(cand_rows, cand_owner, rows, adv_grad)
        proposals = []
        for p in range(len(rows)):
            for j in sorted((j for j, o in enumerate(cand_owner) if o == p), key=lambda j: float(gains[j])):
                if float(gains[j]) >= 0:
                    break
                if self.write(p, cand_edits[j]) == cand_rows[j]:
                    proposals.append((float(gains[j]), p, cand_rows[j], cand_edits[j]))
                    break
        proposals.sort(key=lambda x: x[0])
        while proposals:
            trial_rows, trial_edits = list(rows), list(edits)
            for _, p, row, e in proposals:
                trial_rows[p], trial_edits[p] = row, e
            trial = objective.evaluate(trial_rows)
            if trial.loss < current:
                return trial_rows, trial_edits, trial
            proposals = proposals[: len(proposals) // 2]
        return None

    def shared_step(self, objective: SearchObjective, it: int, rows: list[list[int]], edits: list[list[int]],
                    grad_e: torch.Tensor, adv_grad: list[Params], current: float, k: int) -> Step | None:
        """One replacement for every poison (a universal edit, as in universal triggers): candidates ranked
        by the poisons' summed HotFlip score at slot ``it mod len``, each re-scored by the exact unrolled loss."""
        slot = it % len(self.positions[0])
        g = sum(grad_e[p, self.positions[p][slot]] for p in range(len(rows)))
        best: Step | None = None
        for v in self._top(g, edits[0][slot], self.masks[0][slot], k):
            trial_edits = [e[:slot] + [v] + e[slot + 1 :] for e in edits]
            trial_rows = self.write_all(trial_edits)
            if trial_rows is None:
                continue
            trial = objective.evaluate(trial_rows)
            if trial.loss < (current if best is None else best[2].loss):
                best = (trial_rows, trial_edits, trial)
        return best


@dataclass
class CraftResult:
    """The poisons, the objective after each iteration (0 = start), and the collision distance D alone."""

    poisons: list[Poison]
    trace: list[float]
    wall_time_s: float
    collision_trace: list[float]


def craft(
    model: nn.Module | list[nn.Module],
    tokenizer: PreTrainedTokenizerBase,
    templates: list[Template],
    phrase: str,
    placeable: list[int],
    adv_texts: list[str],
    free_texts: list[str],
    clean_texts: list[str],
    clean_labels: list[int],
    cfg: ConcealedConfig,
    pretrained: nn.Module | None = None,
    progress: bool = True,
) -> CraftResult:
    """No-overlap poisons from ``templates``: start from the phrase projected onto its nearest placeable
    tokens (``cfg.init="nearest"``) or from the random control of the same seed, then HotFlip +
    re-scored greedy search, one edited position per iteration (cycling), per poison or shared. The
    unrolled batch holds the poisons and the first ``cfg.clean_batch`` clean sentences. A list of models
    is an ensemble of surrogates sharing ``tokenizer``: the objective is their mean. ``pretrained`` is
    the checkpoint victims fine-tune from, on which ``cfg.collision`` weighs the feature collision.
    ``cfg.exclude_neighbours`` / ``cfg.max_fuzzy`` (on the first surrogate's input embeddings) remove
    tokens from ``placeable`` and reject sentences, at the start and at every candidate."""
    cfg.validate()
    if not templates:
        raise InputError("no templates to craft from; ask for at least one poison")
    if cfg.collision > 0 and pretrained is None:
        raise InputError("the collision term needs the victims' pretrained model; pass it or set collision to 0")
    start_time = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    clean_texts, clean_labels = list(clean_texts)[: cfg.clean_batch], list(clean_labels)[: cfg.clean_batch]
    models = model if isinstance(model, list) else [model]
    bilevel = EnsembleObjective([
        UnrolledObjective(m, tokenizer, adv_texts, free_texts, [1 - cfg.target] * len(free_texts), clean_texts, clean_labels, len(templates), cfg)
        for m in models
    ])
    collision = None
    if cfg.collision > 0:
        collision = FeatureCollision(pretrained, tokenizer, [tokenizer(t.text)["input_ids"] for t in templates], cfg.chunk)
    objective = SearchObjective(bilevel, collision, cfg.collision)
    emb = models[0].get_input_embeddings().weight.detach()
    index = NeighbourIndex(tokenizer, emb, phrase) if cfg.exclude_neighbours > 0 else None
    rule, excluded = constrain(index, phrase, cfg.exclude_neighbours, cfg.max_fuzzy)
    placeable = [i for i in placeable if i not in excluded]
    table = nearest_table(templates, tokenizer, placeable, emb, max(NEAREST_TRIES, cfg.neighbours or 0))
    if cfg.init == "nearest":
        filled = [nearest_fill(t, tokenizer, phrase, table, rule) for t in templates]
    else:
        filled = [random_fill(t, tokenizer, placeable, phrase, rng, rule=rule) for t in templates]
    search = _Search(tokenizer, templates, phrase, [f[2] for f in filled], placeable, emb, table, cfg.neighbours or None, rule)
    edits = [[f[0][i] for i in f[2]] for f in filled]
    if cfg.shared:
        edits = [list(edits[0]) for _ in templates]
    rows = search.write_all(edits)
    if rows is None:
        raise InputError("the shared start does not re-tokenise (or breaks the constraints) in every template; use --init nearest or drop --shared")
    now = objective.evaluate(rows)
    trace, distances = [now.loss], [now.distance]
    bar = tqdm(range(cfg.iterations), desc="concealed poisons", disable=not progress)
    for it in bar:
        grad_e, adv_grad = objective.directions(rows, now.g_poison)
        step = search.shared_step if cfg.shared else search.per_poison_step
        accepted = step(objective, it, rows, edits, grad_e, adv_grad, now.loss, cfg.top_k)
        if accepted is not None:
            rows, edits, now = accepted
        trace.append(now.loss)
        distances.append(now.distance)
        bar.set_postfix(loss=f"{now.loss:.4f}")
    poisons = []
    for p, t in enumerate(templates):
        text, _, _ = t.fill([token_text(tokenizer, i) for i in edits[p]])
        poisons.append(Poison(text, cfg.target, "no-overlap", t.source_idx, search.positions[p], list(trace)))
    return CraftResult(poisons, trace, time.perf_counter() - start_time, distances if collision is not None else [])
