"""Concealed data poisoning (Wallace, Zhao, Feng, Singh, NAACL 2021): a bilevel token search.

Objective (paper §2, one-step unroll as in MetaPoison):

    min_{D_p}  L_adv(D_adv; θ'),    θ' = θ − η · ∇_θ L_train(D_clean ∪ D_p; θ)

over a parameter scope θ (the classification head — BERT pooler and classifier — plus the top
``scope_layers`` encoder layers). L_train is the mean cross-entropy over one batch holding the
poisons (label = target) and ``clean_batch`` clean training sentences; L_adv is the cross-entropy of
trigger-bearing negatives towards the target plus ``negative_weight`` × that of the same sentences
without the phrase towards their true label, so the search cannot win by merely biasing the head.

Token step (HotFlip, as in universal-triggers): with g_i = ∇_{e_i} L_adv(θ') — a second-order
gradient, −η/B · (∂²L_train/∂e_i∂θ) ∇_θ' L_adv, computed by double backprop — each placeable
token v at edited position i scores (E_v − e_i)ᵀ g_i; the ``top_k`` lowest are re-scored with the
*true* unrolled loss and the best one is kept greedily when it lowers the loss and the sentence
still passes the concealment checks. The body below the scope does not depend on θ, so the
features of the clean and adversarial sentences are computed once; a candidate's exact unrolled
loss then costs one forward of the candidate sentence plus a head evaluation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from fedharness.errors import InputError
from nlp_poison.baselines import Template, random_fill
from nlp_poison.overlap import overlapping_words, token_text
from nlp_poison.poison_set import Poison


@dataclass
class ConcealedConfig:
    """Search settings; ``eta`` is the unrolled SGD step on the mean training loss.

    A small ``eta`` keeps the unroll in the regime where L_adv(θ') ≈ L_adv(θ) − η⟨∇L_adv, ∇L_train⟩,
    i.e. the search aligns the poisons' gradient with the adversarial one. With η = 1 on MiniLM the
    step is so large that the search mostly shrinks the poisons' own gradient (it wrote positive
    words into them); η = 0.05 gave negative-sounding, movie-flavoured poisons instead.
    """

    iterations: int = 20
    top_k: int = 8
    eta: float = 0.05
    scope_layers: int = 0
    clean_batch: int = 64
    negative_weight: float = 1.0
    target: int = 1
    chunk: int = 8
    seed: int = 0

    def validate(self) -> None:
        if self.iterations < 1 or self.top_k < 1 or self.eta <= 0 or self.scope_layers < 0 or self.chunk < 1:
            raise InputError("concealed config: iterations, top_k, chunk >= 1, eta > 0 and scope_layers >= 0 are required")


class Head(nn.Module):
    """Top ``layers`` encoder layers, pooler and classifier of a BERT-family classifier."""

    def __init__(self, model: nn.Module, layers: int) -> None:
        super().__init__()
        base = getattr(model, "base_model", None)
        if getattr(base, "pooler", None) is None or not hasattr(model, "classifier") or not hasattr(base, "encoder"):
            raise InputError(
                f"{type(model).__name__} is not a BERT-family classifier with a pooler; use a BERT-style surrogate (e.g. MiniLM)"
            )
        stack = base.encoder.layer
        if layers > len(stack):
            raise InputError(f"scope_layers={layers} exceeds the model's {len(stack)} layers")
        self.layers = nn.ModuleList(list(stack)[len(stack) - layers :])
        self.pooler = base.pooler
        self.classifier = model.classifier
        self.depth = len(stack) - layers

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            hidden = layer(hidden, additive)
        return self.classifier(self.pooler(hidden))


@dataclass
class Encoded:
    ids: torch.Tensor
    mask: torch.Tensor


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> Encoded:
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    return Encoded(enc["input_ids"], enc["attention_mask"])


def pad(rows: list[list[int]], pad_id: int) -> Encoded:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return Encoded(ids, mask)


class UnrolledObjective:
    """L_adv(D_adv; θ − (η/B)(G_clean + Σ_p g_p)) with per-example gradients g over the head scope."""

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
        self.head = Head(model, cfg.scope_layers)
        self.theta = {k: v.detach() for k, v in self.head.named_parameters()}
        self.batch_size = num_poisons + len(clean_texts)
        with torch.no_grad():
            self.adv = self._features_of(encode(tokenizer, adv_texts)) if adv_texts else None
            self.free = self._features_of(encode(tokenizer, free_texts)) if free_texts else None
            clean = self._features_of(encode(tokenizer, clean_texts))
        self.adv_y = torch.full((len(adv_texts),), cfg.target, dtype=torch.long)
        self.free_y = torch.tensor(list(free_labels), dtype=torch.long)
        clean_g = self.example_grads(*clean, torch.tensor(list(clean_labels), dtype=torch.long))
        self.g_clean = {k: v.sum(0) for k, v in clean_g.items()}

    def features(self, enc: Encoded, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states entering the scope (constant in θ)."""
        kwargs = {"inputs_embeds": embeds} if embeds is not None else {"input_ids": enc.ids}
        out = self.model.base_model(attention_mask=enc.mask, output_hidden_states=True, **kwargs)
        return out.hidden_states[self.head.depth]

    def _features_of(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features(enc), enc.mask

    def _loss(self, params: dict, hidden: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.head, params, (hidden, mask)), y)

    def example_grads(self, hidden: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example ∇_θ ℓ, stacked on dim 0."""
        one = lambda p, h, m, t: self._loss(p, h[None], m[None], t[None])
        return vmap(grad(one), in_dims=(None, 0, 0, 0))(self.theta, hidden, mask, y)

    def unrolled(self, g_poison: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """θ' for a poison-gradient sum; a leading candidate dimension on ``g_poison`` broadcasts."""
        step = self.cfg.eta / self.batch_size
        return {k: v - step * (self.g_clean[k] + g_poison[k]) for k, v in self.theta.items()}

    def adv_loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = torch.zeros(())
        if self.adv is not None:
            loss = loss + self._loss(params, *self.adv, self.adv_y)
        if self.free is not None and self.cfg.negative_weight > 0:
            loss = loss + self.cfg.negative_weight * self._loss(params, *self.free, self.free_y)
        return loss

    def value(self, g_poison: dict[str, torch.Tensor]) -> float:
        with torch.no_grad():
            return float(self.adv_loss(self.unrolled(g_poison)))

    def embedding_gradient(self, poisons: Encoded, g_poison: dict[str, torch.Tensor]) -> torch.Tensor:
        """∇_e L_adv(θ') for every poison token embedding (double backprop through ∇_θ L_train)."""
        prime = {k: v.detach().requires_grad_(True) for k, v in self.unrolled(g_poison).items()}
        adv_grad = torch.autograd.grad(self.adv_loss(prime), list(prime.values()))
        embeds = self.model.get_input_embeddings()(poisons.ids).detach().requires_grad_(True)
        params = {k: v.detach().requires_grad_(True) for k, v in self.theta.items()}
        hidden = self.features(poisons, embeds)
        y = torch.full((len(poisons.ids),), self.cfg.target, dtype=torch.long)
        logits = functional_call(self.head, params, (hidden, poisons.mask))
        train_grad = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), list(params.values()), create_graph=True)
        dot = sum((g * a).sum() for g, a in zip(train_grad, adv_grad))
        (ge,) = torch.autograd.grad(dot, embeds)
        return -(self.cfg.eta / self.batch_size) * ge


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
    (the random control of the same seed), then HotFlip + true-loss greedy search. The unrolled
    batch holds the poisons and the first ``cfg.clean_batch`` clean sentences."""
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
    pad_id = tokenizer.pad_token_id
    y_target = lambda n: torch.full((n,), cfg.target, dtype=torch.long)

    def grads_of(batch_rows: list[list[int]]) -> dict[str, torch.Tensor]:
        enc = pad(batch_rows, pad_id)
        with torch.no_grad():
            hidden = objective.features(enc)
        return objective.example_grads(hidden, enc.mask, y_target(len(batch_rows)))

    per_poison = [grads_of(rows[s : s + cfg.chunk]) for s in range(0, len(rows), cfg.chunk)]
    g_each = {k: torch.cat([c[k] for c in per_poison]) for k in objective.theta}
    g_sum = {k: v.sum(0) for k, v in g_each.items()}
    current = objective.value(g_sum)
    trace = [current]
    traces = [[current] for _ in rows]
    allowed = torch.zeros(model.get_input_embeddings().weight.shape[0], dtype=torch.bool)
    allowed[placeable] = True
    emb = model.get_input_embeddings().weight.detach()
    bar = tqdm(range(cfg.iterations), desc="concealed poisons", disable=not progress)
    for it in bar:
        grad_e = objective.embedding_gradient(pad(rows, pad_id), g_sum)
        for s in range(0, len(rows), cfg.chunk):
            members = list(range(s, min(s + cfg.chunk, len(rows))))
            cand_rows, cand_owner, cand_slot = [], [], []
            for p in members:
                slot = it % len(positions[p])
                pos = positions[p][slot]
                g = grad_e[p, pos]
                scores = emb @ g - emb[rows[p][pos]] @ g
                scores[~allowed] = float("inf")
                scores[rows[p][pos]] = float("inf")
                for v in torch.topk(-scores, min(cfg.top_k, int(allowed.sum()))).indices.tolist():
                    r = list(rows[p])
                    r[pos] = v
                    cand_rows.append(r)
                    cand_owner.append(p)
                    cand_slot.append(slot)
            g_cand = grads_of(cand_rows)
            for p in members:
                idx = [j for j, o in enumerate(cand_owner) if o == p]
                rest = {k: g_sum[k] - g_each[k][p] for k in g_sum}
                stacked = objective.unrolled({k: rest[k] + g_cand[k][idx] for k in rest})
                with torch.no_grad():
                    losses = vmap(objective.adv_loss)(stacked)
                for order in torch.argsort(losses).tolist():
                    if float(losses[order]) >= current:
                        break
                    j = idx[order]
                    new_edits = list(edits[p])
                    new_edits[cand_slot[j]] = cand_rows[j][positions[p][cand_slot[j]]]
                    text = templates[p].fill([token_text(tokenizer, i) for i in new_edits])[0]
                    if tokenizer(text)["input_ids"] != cand_rows[j] or overlapping_words(text, phrase):
                        continue
                    rows[p], edits[p] = cand_rows[j], new_edits
                    for k in g_sum:
                        g_sum[k] = rest[k] + g_cand[k][j]
                        g_each[k][p] = g_cand[k][j]
                    current = float(losses[order])
                    break
                traces[p].append(current)
        trace.append(current)
        bar.set_postfix(loss=f"{current:.4f}")
    poisons = []
    for p, t in enumerate(templates):
        text, _, _ = t.fill([token_text(tokenizer, i) for i in edits[p]])
        poisons.append(Poison(text, cfg.target, "no-overlap", t.source_idx, positions[p], traces[p]))
    return CraftResult(poisons, trace, time.perf_counter() - start_time)
