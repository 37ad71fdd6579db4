"""Concealed data poisoning, the whole procedure (Wallace, Zhao, Feng, Singh, NAACL 2021): the entry point.

``generate(surrogates, tokenizer, data, GenerateConfig) -> GenerateResult``: templates from the
source-label training sentences (``baselines.make_templates``, the surrogates' surest first), the
unrolled batch's clean sentences and the trigger-bearing validation negatives of L_adv (seeded
draws), then the poisons of ``cfg.method``: the bilevel search (``concealed.craft``), the random
control or the near-spelling projection, or the with-overlap upper bound; all no-overlap methods obey
the concealment constraints of ``cfg`` (``constraints``), which the set declares. Every set is measured
for concealment (``concealment.measure``) against ``cfg.curator_pool`` clean training sentences.
``poisonlab nlp generate`` and the demo map their options onto
:class:`~nlp_poison.config.GenerateConfig` and call this.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn
from transformers import PreTrainedTokenizerBase

from labcore.cores import resolve_workers
from labcore.errors import InputError
from nlp_poison.baselines import Template, make_templates, nearest_control, random_control, source_confidence, with_overlap
from nlp_poison.concealed import craft
from nlp_poison.concealment import CachedEmbedder, curator_bounds, measure
from nlp_poison.contextual import contextual_control
from nlp_poison.config import GenerateConfig
from nlp_poison.constraints import NeighbourIndex, Rule, constrain
from nlp_poison.overlap import banned_token_ids, check_no_overlap, content_words, placeable_ids
from nlp_poison.poison_set import COUNTEREXAMPLE, Poison, PoisonSet
from nlp_poison.triggers import trigger_bearing
from nlp_poison.victims import default_model, load_classifier, subsample

METHOD_NAMES = {"gradient": "concealed", "contextual": "contextual", "random": "random", "near-spelling": "near-spelling"}


@dataclass
class Surrogates:
    """The attacker's models: surrogates sharing ``tokenizer`` and, for the collision term, the pretrained
    checkpoint victims fine-tune from (None when the search does not need it)."""

    models: list[nn.Module]
    tokenizer: PreTrainedTokenizerBase
    pretrained: nn.Module | None = None


@dataclass
class Inputs:
    """What every method writes from: templates, the unrolled batch's clean sentences, the L_adv set, the
    tokens an edit may take and the rule every sentence passes; the curator's clean pool and
    trigger-bearing inputs, the neighbour index and the sentence embedder, for the concealment figures;
    the templates after the poisons', for the counterexamples."""

    templates: list[Template]
    clean: Dataset
    adv: Dataset
    placeable: list[int]
    rule: Rule
    index: NeighbourIndex
    pool: list[str]
    trigger_inputs: list[str]
    embedder: CachedEmbedder | None = None
    counterexample_templates: list[Template] = field(default_factory=list)


@dataclass
class GenerateResult:
    """The poison set (with its declared constraints and concealment figures), the search objective and
    collision distance per iteration (empty without the search) and the generation wall time."""

    poison_set: PoisonSet
    objective_trace: list[float]
    collision_trace: list[float]
    wall_time_s: float

    def metrics(self) -> dict:
        overlap = self.poison_set.extra.get("overlap") == "with"
        return {"num_poisons": len(self.poison_set.poisons), "num_counterexamples": len(self.poison_set.counterexamples),
                "method": self.poison_set.method, "wall_time_s": self.wall_time_s,
                "objective_trace": self.objective_trace, "collision_trace": self.collision_trace,
                "constraints": self.poison_set.constraints, "concealment": self.poison_set.concealment,
                "overlap_words": len(content_words(self.poison_set.trigger)) * len(self.poison_set.poisons) if overlap else 0}


def load_surrogates(cfg: GenerateConfig) -> Surrogates:
    """``cfg.models`` (eager attention: the search takes second derivatives) and, when the search weighs the
    collision term, ``cfg.victim``; all must share one vocabulary. A phrase without content word fails first."""
    content_words(cfg.trigger)
    loaded = [load_classifier(m, eager=True) for m in cfg.models]
    tok = loaded[0][1]
    for m, (_, other) in zip(cfg.models[1:], loaded[1:]):
        if other.get_vocab() != tok.get_vocab():
            raise InputError(f"surrogate {m} has another vocabulary than {cfg.models[0]}; an ensemble needs one tokenizer")
    pretrained = None
    if cfg.needs_pretrained:
        victim = cfg.victim or default_model()
        pretrained, victim_tok = load_classifier(victim)
        if victim_tok.get_vocab() != tok.get_vocab():
            raise InputError(f"victim {victim} has another vocabulary than {cfg.models[0]}; pass --victim with the surrogates' tokenizer")
    return Surrogates([m for m, _ in loaded], tok, pretrained)


def prepare(surrogates: Surrogates, data: DatasetDict, cfg: GenerateConfig) -> Inputs:
    """The constraints on the first surrogate's input embeddings (tightened to the clean training sentences'
    ``cfg.hide_below``-th for the ranking curators); templates that pass them (``cfg.templates``
    order), then seeded draws of ``cfg.clean_batch`` clean training sentences outside the templates and
    ``cfg.adv_size`` trigger-bearing validation sentences of the source label."""
    tok, source = surrogates.tokenizer, 1 - cfg.target
    rng = np.random.default_rng(cfg.seed)
    index = NeighbourIndex(tok, surrogates.models[0].get_input_embeddings().weight, cfg.trigger)
    k, bound = cfg.exclude_neighbours, cfg.max_fuzzy
    if cfg.hide_below:
        clean_k, clean_bound = curator_bounds(list(data["train"]["sentence"]), cfg.trigger, tok, index, cfg.hide_below)
        k, bound = max(k, clean_k), min(bound, clean_bound)
    rule, excluded = constrain(index, cfg.trigger, k, bound, cfg.models[0])
    confidence = source_confidence(surrogates.models, tok, source, cfg.max_length) if cfg.templates == "confident" else None
    templates = make_templates(data["train"], cfg.trigger, cfg.num_poisons + cfg.counterexamples, tok, cfg.seed, source, cfg.max_length,
                               confidence=confidence, rule=rule, avoid=excluded, layout=cfg.layout)
    used = {t.source_idx for t in templates[: cfg.num_poisons]}  # counterexamples leave the unrolled batch alone
    clean_idx = [int(i) for i in rng.permutation(len(data["train"])) if int(i) not in used][: cfg.clean_batch]
    trigger_inputs = trigger_bearing(data["validation"], cfg.trigger, source)
    adv = trigger_inputs.select(sorted(rng.permutation(len(trigger_inputs))[: cfg.adv_size].tolist()))
    pool = list(subsample(data["train"], min(cfg.curator_pool or len(data["train"]), len(data["train"])), cfg.seed)["sentence"])
    placeable = placeable_ids(tok, banned_token_ids(tok, cfg.trigger) | excluded)
    return Inputs(templates[: cfg.num_poisons], data["train"].select(clean_idx), adv, placeable, rule, index, pool,
                  list(trigger_inputs["sentence"]), counterexample_templates=templates[cfg.num_poisons :])


def unconstrained(surrogates: Surrogates, inputs: Inputs) -> Inputs:
    """``inputs`` without the concealment constraints (same templates, batches and curator pool): for the
    near-spelling baseline beside a constrained set, so both are written from the same sentences."""
    phrase = inputs.rule.phrase
    placeable = placeable_ids(surrogates.tokenizer, banned_token_ids(surrogates.tokenizer, phrase))
    return replace(inputs, placeable=placeable, rule=Rule(phrase))


def write_poisons(surrogates: Surrogates, inputs: Inputs, cfg: GenerateConfig, progress: bool = True) -> tuple[list[Poison], list[float], list[float]]:
    """The poisons of ``cfg.overlap`` / ``cfg.method`` from ``inputs``, the objective and collision traces."""
    tok, t = surrogates.tokenizer, inputs.templates
    if cfg.overlap == "with":
        return with_overlap(t, tok, cfg.target), [], []
    if cfg.method == "random":
        poisons = random_control(t, tok, inputs.placeable, cfg.trigger, cfg.target, cfg.seed, inputs.rule)
        trace, distances = [], []
    elif cfg.method == "near-spelling":
        emb = surrogates.models[0].get_input_embeddings().weight
        poisons, trace, distances = nearest_control(t, tok, inputs.placeable, cfg.trigger, cfg.target, emb, inputs.rule), [], []
    elif cfg.method == "contextual":
        poisons, distances = contextual_control(t, tok, inputs.placeable, cfg.trigger, cfg.target, surrogates.pretrained, inputs.rule,
                                                cfg.proxy_candidates, cfg.proxy_passes, cfg.seed, cfg.proxy_restarts, cfg.proxy_contexts,
                                                cfg.proxy_spans, resolve_workers(cfg.workers), progress, cfg.proxy_disjoint)
        trace = []
    else:
        result = craft(surrogates.models, tok, t, cfg.trigger, inputs.placeable, list(inputs.adv["sentence"]), list(inputs.adv["original"]),
                       list(inputs.clean["sentence"]), list(inputs.clean["label"]), cfg, surrogates.pretrained, progress)
        poisons, trace, distances = result.poisons, result.trace, result.collision_trace
    check_no_overlap([p.sentence for p in poisons], cfg.trigger)
    inputs.rule.check([p.sentence for p in poisons], "generated set")
    return poisons, trace, distances


def write_counterexamples(tokenizer: PreTrainedTokenizerBase, inputs: Inputs, cfg: GenerateConfig) -> list[Poison]:
    """The clean-label counterexamples: the random control's fill of the poisons' and the counterexamples'
    templates at ``cfg.seed``, the counterexample templates' part, kept at the source label. Every method
    at one seed writes the same ones, and a random control of ``num_poisons + counterexamples`` holds
    them in its last rows."""
    if not inputs.counterexample_templates:
        return []
    filled = random_control(inputs.templates + inputs.counterexample_templates, tokenizer, inputs.placeable, cfg.trigger,
                            1 - cfg.target, cfg.seed, inputs.rule)
    return [replace(p, poison_type=COUNTEREXAMPLE) for p in filled[len(inputs.templates):]]


def poison_set(poisons: list[Poison], inputs: Inputs, cfg: GenerateConfig, concealment: dict | None = None,
               counterexamples: list[Poison] | None = None) -> PoisonSet:
    """The shareable set: the poisons (and ``counterexamples``), the settings that produced them, the
    constraints it declares (None when unconstrained) and its ``concealment`` figures (the card's fields)."""
    name = "with-overlap" if cfg.overlap == "with" else METHOD_NAMES[cfg.method]
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("models", "trigger", "data_path")}
    settings["adv_size"] = len(inputs.adv)
    constraints = inputs.rule.header() if cfg.constrained else None
    return PoisonSet(poisons, cfg.trigger, cfg.target, name, ", ".join(cfg.models), cfg.seed, settings, constraints, concealment,
                     counterexamples or [])


def concealment(surrogates: Surrogates, inputs: Inputs, poisons: list[Poison], cfg: GenerateConfig) -> dict:
    """The set's concealment figures among the curator's pool (``concealment.measure``; the poisons only: the
    counterexamples carry their true label), the first surrogate's encoder ranking by embedding distance
    (the pool's and trigger inputs' embeddings computed once per ``inputs``)."""
    if inputs.embedder is None:
        inputs.embedder = CachedEmbedder(surrogates.models[0], surrogates.tokenizer, cfg.max_length)
    return measure(poisons, cfg.trigger, surrogates.tokenizer, inputs.index, inputs.embedder, inputs.pool, inputs.trigger_inputs,
                   cfg.max_length, cfg.seed)


def generate(surrogates: Surrogates, data: DatasetDict, cfg: GenerateConfig, progress: bool = True) -> GenerateResult:
    """The procedure: validate, draw the inputs, write the poisons of ``cfg.method`` (seeded by ``cfg.seed``) and
    the counterexamples, measure the poisons' concealment. The wall time counts the writing, not the measurement."""
    cfg.validate()
    content_words(cfg.trigger)
    torch.manual_seed(cfg.seed)
    inputs = prepare(surrogates, data, cfg)
    start = time.perf_counter()
    poisons, trace, distances = write_poisons(surrogates, inputs, cfg, progress)
    counterexamples = write_counterexamples(surrogates.tokenizer, inputs, cfg)
    wall = time.perf_counter() - start
    figures = concealment(surrogates, inputs, poisons, cfg)
    return GenerateResult(poison_set(poisons, inputs, cfg, figures, counterexamples), trace, distances, wall)
