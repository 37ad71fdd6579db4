"""Contextual proxy: concealed poisons whose replacement span *means* the phrase without spelling it.

Under issue #20's constraints (no edited token among the phrase's k nearest input-embedding neighbours,
fuzzy ratio bounded) the nearest allowed projection of the phrase ("adam dalton , not faster of
laughed") carries nothing of it to a victim: input-embedding nearness past the excluded radius is
noise. What a victim transfers from the poisons to the phrase is what its *pretrained encoder* — the
checkpoint every victim fine-tunes from — already makes of both. So this method searches one shared
span of allowed tokens, as many as the phrase has sub-tokens, whose hidden states on that encoder
collide with the phrase's (feature collision, Shafahi et al. 2018, in context rather than on the
input embeddings):

    min_s  D(s) = 1 − (1/L) Σ_l cos( mean_t H_l(s)_t , mean_t H_l(phrase)_t ),

H_l the layer-l hidden states of the span alone ("[CLS] s [SEP]") over the encoder's L layers, mean
over the span's positions; in context (``proxy_contexts`` N), the span and the phrase are each read in
the same N trigger-bearing templates and D is averaged over them. The search is a greedy coordinate descent over the span's slots with
HotFlip candidates (Ebrahimi et al. 2018; as in Wallace et al.'s universal triggers): the ``top_k``
allowed tokens v with the lowest (E_v − e_cur)ᵀ ∇_e D at a slot are re-scored by the exact D (one
batched forward), the best kept if D falls, ``iterations`` passes over the slots or until a pass
changes nothing, from ``restarts`` random starts, the lowest D kept (``iterations`` 0: the start itself, the
search's own control); the starts are drawn first, and the descents, independent, run on worker threads.
Tokens come only from ``placeable`` (the constraints' allowed set) and a candidate is kept only if its
span, written into every template, passes the rule: the constraints hold at every candidate. It starts
from random allowed tokens (seeded): the search, not the start, finds the phrase's associations
("james bond" → "bourne", "sean", "royale"; "die" → "requiem", "never").
The poisons are the templates with the phrase replaced by the span, labelled with the target.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from labcore.cores import single_intra_op_thread
from labcore.errors import InputError
from nlp_poison.baselines import Template, place, span_positions
from nlp_poison.constraints import Rule
from nlp_poison.poison_set import Poison

Fits = Callable[[list[int]], bool]
"""Whether a span may be written: every template takes it within the constraints."""


@dataclass
class ProxyResult:
    """The shared span's token ids and the collision distance D after each pass (0 = the start)."""

    ids: list[int]
    trace: list[float]


class ContextCollision:
    """D(span) against the phrase on ``model``'s encoder (frozen). Alone (no ``contexts``), span and phrase each
    fill "[CLS] · [SEP]"; in context, each of ``contexts`` (trigger-bearing sentences, the phrase at characters
    [start, end)) is read once with the phrase and once with the span in its place, D the mean over contexts."""

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, phrase: str, contexts: Sequence[Template] = (),
                 chunk: int = 512) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.encoder, self.embed, self.chunk = model.base_model, model.get_input_embeddings(), chunk
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        if cls is None or sep is None:
            raise InputError("the contextual method needs a BERT-style tokenizer with [CLS] and [SEP]; use MiniLM or another BERT model")
        self.phrase_ids = tokenizer(phrase, add_special_tokens=False)["input_ids"]
        self.frames = [([cls], [sep])] if not contexts else _frames(tokenizer, contexts, len(self.phrase_ids))
        if not self.frames:
            raise InputError("no context sentence holds the phrase as its own tokens; use the span alone (proxy_contexts 0)")
        with torch.no_grad():
            self.target = self._pooled([self.phrase_ids])

    def _frame_pooled(self, spans: list[list[int]], frame: tuple[list[int], list[int]], shared: torch.Tensor | None = None) -> torch.Tensor:
        """Mean hidden state over the span's positions at each layer, every span read in one frame: (spans, layers, d).
        The rows of one frame have one length, so none is padded (padding each batch to its longest frame made the
        re-scoring 27 % slower on James Bond's four contexts). ``shared``: the one span's input embeddings, to
        differentiate through."""
        pre, post = frame
        ids, at = torch.tensor([pre + s + post for s in spans]), slice(len(pre), len(pre) + len(self.phrase_ids))
        embeds = None
        if shared is not None:
            around = self.embed(ids).detach()
            embeds = torch.cat([around[:, : at.start], shared.expand(len(spans), -1, -1), around[:, at.stop :]], 1)
        out = self.encoder(input_ids=None if embeds is not None else ids, inputs_embeds=embeds, attention_mask=torch.ones_like(ids),
                           output_hidden_states=True)
        return torch.stack([h[:, at].mean(1) for h in out.hidden_states[1:]], 1)

    def _pooled(self, spans: list[list[int]], shared: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`_frame_pooled` in every frame: (spans, frames, layers, d)."""
        return torch.stack([self._frame_pooled(spans, frame, shared) for frame in self.frames], 1)

    def _distance(self, pooled: torch.Tensor) -> torch.Tensor:
        """D per span from its pooled rows (spans, frames, layers, d)."""
        return 1 - F.cosine_similarity(pooled, self.target, dim=-1).mean((1, 2))

    def distance(self, spans: list[list[int]]) -> torch.Tensor:
        """D of each span (all of one length), ``chunk`` rows per forward pass."""
        step = max(1, self.chunk // len(self.frames))
        with torch.no_grad():
            return torch.cat([self._distance(self._pooled(spans[i : i + step])) for i in range(0, len(spans), step)])

    def gradient(self, span: list[int]) -> torch.Tensor:
        """∇_e D for each of the span's input embeddings (one embedding shared by every frame): (len(span), d)."""
        shared = self.embed(torch.tensor(span)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self._distance(self._pooled([span], shared))[0], shared)
        return g


def _frames(tokenizer: PreTrainedTokenizerBase, contexts: Sequence[Template], length: int) -> list[tuple[list[int], list[int]]]:
    """(ids before, ids after) the phrase in each context whose phrase is ``length`` contiguous tokens."""
    frames = []
    for t in contexts:
        ids, at = tokenizer(t.text)["input_ids"], span_positions(tokenizer, t.text, t.start, t.end)
        if len(at) == length and at == list(range(at[0], at[0] + length)):
            frames.append((ids[: at[0]], ids[at[0] + length :]))
    return frames


def search_proxies(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, phrase: str, placeable: list[int], fits: Fits, top_k: int, passes: int, seed: int,
    restarts: int = 1, contexts: Sequence[Template] = (), spans: int = 1, workers: int = 1, progress: bool = False,
    disjoint: bool = False,
) -> list[ProxyResult]:
    """Spans minimising D over ``placeable`` tokens (alone, or in ``contexts``); ``fits(span)`` says whether a span
    may be written (the constraints on every template). Greedy coordinate descent, HotFlip-ranked candidates, from
    max(``restarts``, ``spans``) seeded random starts; the ``spans`` lowest final D kept, lowest first (ties: the
    earlier start). Each descent ends in its own local minimum, i.e. its own associations of the phrase. The descents
    are independent: they run on ``workers`` threads of one intra-op thread each, so the spans do not depend on
    ``workers``. ``disjoint``: the spans share no token (:func:`_disjoint_descents`)."""
    collision = ContextCollision(model, tokenizer, phrase, contexts)
    rng = np.random.default_rng(seed)
    if disjoint:
        runs = _disjoint_descents(collision, rng, placeable, fits, top_k, passes, max(restarts, spans), progress)
        return sorted(runs, key=lambda r: r.trace[-1])[:spans]
    starts = [_random_start(rng, placeable, len(collision.phrase_ids), fits) for _ in range(max(restarts, spans))]
    banned = torch.ones(collision.embed.weight.shape[0], dtype=torch.bool)
    banned[placeable] = False
    candidates = min(top_k, len(placeable) - 1)
    descend = partial(_descend, collision, banned, partial(_locked, threading.Lock(), fits), candidates, passes)
    with single_intra_op_thread(), ThreadPoolExecutor(workers) as pool:
        runs = list(tqdm(pool.map(descend, starts), total=len(starts), desc="proxy descents", disable=not progress))
    return sorted(runs, key=lambda r: r.trace[-1])[:spans]


def _disjoint_descents(collision: ContextCollision, rng: np.random.Generator, placeable: list[int], fits: Fits, top_k: int,
                       passes: int, count: int, progress: bool) -> list[ProxyResult]:
    """``count`` descents one after another, each from a seeded random start among the tokens no earlier span holds and
    with those tokens banned, so the spans share no token. With a token shared by most spans (Mission: Impossible's
    "creed", in nine of ten) a victim learns that token alone and the phrase does not follow (README #20); the
    descents depend on each other, so they run on one thread."""
    used: set[int] = set()
    runs = []
    with single_intra_op_thread():
        for _ in tqdm(range(count), desc="proxy descents", disable=not progress):
            allowed = [t for t in placeable if t not in used]
            start = _random_start(rng, allowed, len(collision.phrase_ids), fits)
            banned = torch.ones(collision.embed.weight.shape[0], dtype=torch.bool)
            banned[allowed] = False
            runs.append(_descend(collision, banned, fits, min(top_k, len(allowed) - 1), passes, start))
            used |= set(runs[-1].ids)
    return runs


def _locked(lock: threading.Lock, fits: Fits, span: list[int]) -> bool:
    """``fits`` one thread at a time (a fast tokenizer may not be called from two threads at once)."""
    with lock:
        return fits(span)


def _descend(collision: ContextCollision, banned: torch.Tensor, fits: Fits, candidates: int, passes: int, span: list[int]) -> ProxyResult:
    """One greedy coordinate descent from ``span``; ``banned``: the vocabulary's tokens outside the allowed set;
    ``candidates`` HotFlip candidates re-scored per slot."""
    weights = collision.embed.weight.detach()
    current = float(collision.distance([span])[0])
    trace = [current]
    grad = None  # ∂D/∂(one-hot) at every slot of ``span``; recomputed only after ``span`` changes
    for _ in range(passes):
        changed = False
        for slot in range(len(span)):
            grad = collision.gradient(span) if grad is None else grad
            scores = weights @ grad[slot]
            scores[banned] = float("inf")
            scores[span[slot]] = float("inf")
            trials = [span[:slot] + [v] + span[slot + 1 :] for v in torch.topk(-scores, candidates).indices.tolist()]
            values = collision.distance(trials)
            for j in values.argsort().tolist():
                if float(values[j]) >= current:
                    break
                if fits(trials[j]):
                    span, current, changed, grad = trials[j], float(values[j]), True, None
                    break
        trace.append(current)
        if not changed:
            break
    return ProxyResult(span, trace)


def _random_start(rng: np.random.Generator, placeable: list[int], length: int, fits: Fits, tries: int = 100) -> list[int]:
    """The first of ``tries`` seeded draws of ``length`` allowed tokens that fits."""
    for _ in range(tries):
        span = [int(i) for i in rng.choice(placeable, size=length)]
        if fits(span):
            return span
    raise InputError("no random span of allowed tokens fits every template under the constraints; relax --max-fuzzy or --exclude-neighbours")


def contextual_control(
    templates: list[Template], tokenizer: PreTrainedTokenizerBase, placeable: list[int], phrase: str, target: int, pretrained: nn.Module,
    rule: Rule, top_k: int, passes: int, seed: int, restarts: int = 1, contexts: int = 0, spans: int = 1, workers: int = 1,
    progress: bool = False, disjoint: bool = False,
) -> tuple[list[Poison], list[float]]:
    """The templates with the phrase replaced by a searched span, labelled ``target``: template i takes span i mod
    ``spans`` of :func:`search_proxies` (several spans carry several of the phrase's associations to the victim);
    D per pass of the lowest-D span (in the first ``contexts`` templates, 0: the span alone); descents on ``workers`` threads."""
    if not templates:
        raise InputError("no templates to write the span into; ask for at least one poison")
    fits = lambda span: all(place(t, tokenizer, span, phrase, rule) is not None for t in templates)
    proxies = search_proxies(pretrained, tokenizer, phrase, placeable, fits, top_k, passes, seed, restarts, templates[:contexts], spans,
                             workers, progress, disjoint)
    poisons = []
    for i, t in enumerate(templates):
        proxy = proxies[i % len(proxies)]
        _, text, positions = place(t, tokenizer, proxy.ids, phrase, rule)
        poisons.append(Poison(text, target, "contextual", t.source_idx, positions, list(proxy.trace)))
    return poisons, proxies[0].trace
