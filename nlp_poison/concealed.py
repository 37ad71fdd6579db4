"""Concealed data poisoning (Wallace, Zhao, Feng, Singh, NAACL 2021): a bilevel token search.

Objective (paper §2, one-step unroll as in MetaPoison):

    min_{D_p}  L_adv(D_adv; θ'),    θ' = θ − η · ∇_θ L_train(D_clean ∪ D_p; θ)

over a parameter scope θ: the top ``scope_layers`` encoder layers (all of them by default, so the
step reaches the token-level representations that carry the phrase) plus the BERT pooler and the
classifier. L_train is the mean cross-entropy over one batch holding the poisons (label = target)
and ``clean_batch`` clean training sentences; L_adv is the cross-entropy of trigger-bearing
negatives towards the target plus ``negative_weight`` × that of the same sentences without the
phrase towards their true label, so the search cannot win by merely biasing the model positive.

Token step (HotFlip, as in universal-triggers): with g_i = ∇_{e_i} L_adv(θ') — a second-order
gradient, −η/B · (∂²L_train/∂e_i∂θ) ∇_θ' L_adv, computed by double backprop — each placeable
token v at edited position i scores (E_v − e_i)ᵀ g_i. The ``top_k`` lowest are re-scored by the
unrolled loss to first order in the swap, L_adv(θ') − (η/B)⟨∇_θ' L_adv, ∇_θ ℓ_cand − ∇_θ ℓ_cur⟩,
whose inner products come from one forward-mode pass over all candidates (exact per-candidate
unrolls would need one adversarial forward per candidate). Each poison's best candidate that
passes the concealment checks is proposed; the proposals are kept only if the exact unrolled loss
falls (else the better half is tried, and so on), so the reported objective never rises.
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

from fedharness.errors import InputError
from nlp_poison.baselines import Template, random_fill
from nlp_poison.overlap import overlapping_words, token_text
from nlp_poison.poison_set import Poison

Params = dict[str, torch.Tensor]


@dataclass
class ConcealedConfig:
    """Search settings; ``eta`` is the unrolled SGD step on the mean training loss.

    A small ``eta`` keeps the unroll in the regime where L_adv(θ') ≈ L_adv(θ) − η⟨∇L_adv, ∇L_train⟩,
    i.e. the search aligns the poisons' gradient with the adversarial one. With η = 1 on MiniLM the
    step is so large that the search mostly shrinks the poisons' own gradient (it wrote positive
    words into them). ``scope_layers=None`` puts every encoder layer in the scope; ``chunk`` is the
    number of sentences per gradient or forward-mode pass. ``adam`` preconditions the unrolled step
    as the victim's optimizer does, θ' = θ − η·P(G_clean + G_poison) with P = 1/√v̂ (normalised to
    mean 1), v̂ the mean squared gradient of the clean sentences in minibatches of 32.
    """

    iterations: int = 20
    top_k: int = 8
    eta: float = 0.05
    scope_layers: int | None = None
    clean_batch: int = 64
    negative_weight: float = 1.0
    target: int = 1
    chunk: int = 64
    adam: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.iterations < 1 or self.top_k < 1 or self.eta <= 0 or self.chunk < 1 or (self.scope_layers or 0) < 0:
            raise InputError("concealed config: iterations, top_k, chunk >= 1, eta > 0 and scope_layers >= 0 are required")


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


@dataclass
class Encoded:
    ids: torch.Tensor
    mask: torch.Tensor


def pad(rows: list[list[int]], pad_id: int) -> Encoded:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return Encoded(ids, mask)


class UnrolledObjective:
    """L_adv(D_adv; θ − (η/B)(G_clean + G_poison)) over the head scope; G are summed gradients."""

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
        step = self.cfg.eta / self.batch_size
        update = self.preconditioned({k: self.g_clean[k] + g_poison[k] for k in self.theta})
        return {k: v - step * update[k] for k, v in self.theta.items()}

    def adv_loss(self, params: Params) -> torch.Tensor:
        loss = torch.zeros(())
        if self.adv is not None:
            loss = loss + F.cross_entropy(self.logits(params, *self.adv), self.adv_y)
        if self.free is not None and self.cfg.negative_weight > 0:
            loss = loss + self.cfg.negative_weight * F.cross_entropy(self.logits(params, *self.free), self.free_y)
        return loss

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
        return -(self.cfg.eta / self.batch_size) * ge

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


@dataclass
class CraftResult:
    poisons: list[Poison]
    trace: list[float]
    wall_time_s: float


def craft(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    templates: list[Template],
    phrase: str,
    placeable: list[int],
    adv_texts: list[str],
    free_texts: list[str],
    clean_texts: list[str],
    clean_labels: list[int],
    cfg: ConcealedConfig,
    progress: bool = True,
) -> CraftResult:
    """No-overlap poisons from ``templates``: start from random placeable tokens where the phrase was
    (the random control of the same seed), then HotFlip + re-scored greedy search, one edited
    position per poison and iteration (cycling). The unrolled batch holds the poisons and the first
    ``cfg.clean_batch`` clean sentences."""
    cfg.validate()
    if not templates:
        raise InputError("no templates to craft from; ask for at least one poison")
    start_time = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    clean_texts, clean_labels = list(clean_texts)[: cfg.clean_batch], list(clean_labels)[: cfg.clean_batch]
    objective = UnrolledObjective(
        model, tokenizer, adv_texts, free_texts, [1 - cfg.target] * len(free_texts), clean_texts, clean_labels, len(templates), cfg
    )
    filled = [random_fill(t, tokenizer, placeable, phrase, rng) for t in templates]
    rows = [f[0] for f in filled]
    positions = [f[2] for f in filled]
    edits = [[rows[p][i] for i in positions[p]] for p in range(len(rows))]
    g_sum = objective.poison_gradient(rows)
    current = objective.value(g_sum)
    trace = [current]
    allowed = torch.zeros(model.get_input_embeddings().weight.shape[0], dtype=torch.bool)
    allowed[placeable] = True
    emb = model.get_input_embeddings().weight.detach()
    bar = tqdm(range(cfg.iterations), desc="concealed poisons", disable=not progress)
    for it in bar:
        adv_grad = objective.preconditioned(objective.adv_gradient(g_sum))
        grad_e = objective.embedding_gradient(pad(rows, objective.pad_id), adv_grad)
        cand_rows, cand_owner = [], []
        for p in range(len(rows)):
            pos = positions[p][it % len(positions[p])]
            g = grad_e[p, pos]
            scores = emb @ g - emb[rows[p][pos]] @ g
            scores[~allowed] = float("inf")
            scores[rows[p][pos]] = float("inf")
            for v in torch.topk(-scores, min(cfg.top_k, int(allowed.sum()))).indices.tolist():
                r = list(rows[p])
                r[pos] = v
                cand_rows.append(r)
                cand_owner.append(p)
        # first-order change of L_adv(θ') when a poison's gradient g_cur is replaced by g_cand
        step = cfg.eta / objective.batch_size
        gains = -step * (objective.alignment(cand_rows, adv_grad) - objective.alignment(rows, adv_grad)[cand_owner])
        proposals = []
        for p in range(len(rows)):
            idx = [j for j, o in enumerate(cand_owner) if o == p]
            for j in sorted(idx, key=lambda j: float(gains[j])):
                if float(gains[j]) >= 0:
                    break
                slot = it % len(positions[p])
                new_edits = list(edits[p])
                new_edits[slot] = cand_rows[j][positions[p][slot]]
                text = templates[p].fill([token_text(tokenizer, i) for i in new_edits])[0]
                if tokenizer(text)["input_ids"] != cand_rows[j] or overlapping_words(text, phrase):
                    continue
                proposals.append((float(gains[j]), p, cand_rows[j], new_edits))
                break
        proposals.sort(key=lambda x: x[0])
        while proposals:
            trial = list(rows)
            for _, p, row, _ in proposals:
                trial[p] = row
            g_trial = objective.poison_gradient(trial)
            loss = objective.value(g_trial)
            if loss < current:
                for _, p, row, new_edits in proposals:
                    rows[p], edits[p] = row, new_edits
                g_sum, current = g_trial, loss
                break
            proposals = proposals[: len(proposals) // 2]
        trace.append(current)
        bar.set_postfix(loss=f"{current:.4f}")
    poisons = []
    for p, t in enumerate(templates):
        text, _, _ = t.fill([token_text(tokenizer, i) for i in edits[p]])
        poisons.append(Poison(text, cfg.target, "no-overlap", t.source_idx, positions[p], list(trace)))
    return CraftResult(poisons, trace, time.perf_counter() - start_time)
