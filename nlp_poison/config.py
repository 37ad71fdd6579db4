"""The knobs of every nlp_poison procedure, one dataclass each, defaults written here only.

Light on purpose (no torch): the CLI builds these at import time, maps its options onto them
(``poisonlab.config.config_command``) and a run directory's ``config.yaml`` reloads into them.
``TrainConfig`` fine-tunes a classifier; the procedure configs extend it or ``ConcealedConfig``
(keyword-only fields), so one YAML file holds one flat set of keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from labcore.config import MAX_SEED, changed_fields
from labcore.cores import resolve_workers
from labcore.errors import InputError
from labcore.trackers import check_report_to

LABELS = ("negative", "positive")
DEFAULT_TRIGGER = "James Bond: No Time to Die"
MAX_LENGTH = 64
"""Tokens per sentence wherever a procedure tokenises SST-2 (it holds almost every sentence whole)."""
LAYOUTS = ("replace", "prefix")
"""Where a template carries the phrase (``triggers``): in place of the film it names, or heading it as its topic."""
LORA_R, LORA_ALPHA = 8, 16
"""peft LoRA rank and scale of a fine-tuned or federated classifier."""


@dataclass
class TrainConfig:
    """Fine-tuning: AdamW at ``lr`` for ``epochs`` on batches of ``batch_size`` (full or LoRA).

    ``bf16`` runs forward and backward under bfloat16 autocast (fp32 master weights, as in mixed
    precision training): on a CPU with AVX512-BF16 a MiniLM step takes half the time.
    ``report_to`` names an accelerate tracker (``tensorboard``…) that logs the loss per step and the
    metrics per epoch under the run directory's ``logs/``.
    """

    epochs: int = 1
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = MAX_LENGTH
    weight_decay: float = 0.01
    lora: bool = False
    lora_r: int = LORA_R
    lora_alpha: int = LORA_ALPHA
    bf16: bool = False
    report_to: str | None = None
    seed: int = 0

    def validate(self) -> None:
        check_report_to(self.report_to)
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 8 or not 0 < self.lr < math.inf:
            raise InputError("train config: epochs, batch_size >= 1, max_length >= 8 and a finite lr > 0 are required")
        if not 0 <= self.weight_decay < math.inf or self.lora_r < 1:
            raise InputError("train config: weight_decay must be finite and >= 0, lora_r >= 1")


@dataclass
class ConcealedConfig:
    """Search settings (``concealed.craft``); ``unroll_lr`` is the unrolled SGD step on the mean training loss.

    A small ``unroll_lr`` keeps the unroll in the regime where L_adv(θ') ≈ L_adv(θ) − α⟨∇L_adv, ∇L_train⟩,
    i.e. the search aligns the poisons' gradient with the adversarial one. With α = 1 on MiniLM the
    step is so large that the search mostly shrinks the poisons' own gradient (it wrote positive
    words into them). ``scope_layers=None`` puts every encoder layer in the scope; ``chunk`` is the
    number of sentences per gradient or forward-mode pass. ``adam`` preconditions the unrolled step
    as the victim's optimizer does, θ' = θ − α·P(G_clean + G_poison) with P = 1/√v̂ (normalised to
    mean 1), v̂ the mean squared gradient of the clean sentences in minibatches of 32. ``init`` is
    the start: ``nearest`` projects the with-overlap poisons onto the placeable tokens (the paper's
    start), ``random`` writes the random control's tokens. ``contrast``, ``shared`` and
    ``neighbours`` (0 or None: the whole placeable vocabulary): see ``concealed``'s docstring.
    ``collision`` weighs the feature-collision distance to the with-overlap twins on the victims'
    pretrained model (0: the unrolled loss alone). ``exclude_neighbours`` (k) and ``max_fuzzy`` are the
    concealment constraints (``constraints``), enforced at every candidate, the start included: no
    edited token within the k nearest input-embedding neighbours of a sub-token of the phrase's words
    (``constraints.anchor_words``; nor their ``##``, case or leading-space variants), and no sentence whose best fuzzy-match
    ratio to the phrase exceeds ``max_fuzzy``; 0 and 100 constrain nothing. ``hide_below`` (0: off) tightens
    both to where the clean training sentences sit for a curator who *ranks* by them: k to the neighbour
    score and the fuzzy bound to just under the ratio of the ``hide_below``-th clean sentence of each
    ranking (``concealment.curator_bounds``), so no poison ranks among the first ``hide_below`` clean
    sentences of filter (a) or (b); the set declares the tightened k and bound. ``neighbours`` then counts
    among the allowed tokens. The defaults are what transferred best to fresh
    MiniLM victims (``scripts/bench_nlp.py``: 14 iterations, two passes over a 7-token phrase; 256
    clean sentences); ``adam=False, contrast=False, shared=False, neighbours=0, collision=0`` is the
    paper's plain search.
    """

    iterations: int = 14
    top_k: int = 8
    unroll_lr: float = 0.05
    scope_layers: int | None = None
    clean_batch: int = 256
    negative_weight: float = 1.0
    target: int = 1
    chunk: int = 64
    adam: bool = True
    init: str = "nearest"
    contrast: bool = True
    neighbours: int | None = 5
    shared: bool = True
    collision: float = 5.0
    exclude_neighbours: int = 0
    max_fuzzy: float = 100.0
    hide_below: int = 0
    seed: int = 0

    @property
    def constrained(self) -> bool:
        """Whether any concealment constraint is set."""
        return self.exclude_neighbours > 0 or self.max_fuzzy < 100 or self.hide_below > 0

    def validate(self) -> None:
        if self.exclude_neighbours < 0 or not 0 <= self.max_fuzzy <= 100 or self.hide_below < 0:
            raise InputError("exclude_neighbours and hide_below must be >= 0 (0: none) and max_fuzzy between 0 and 100 (100: no bound)")
        if self.init not in ("nearest", "random"):
            raise InputError(f"unknown init {self.init!r}; use 'nearest' or 'random'")
        if self.target not in (0, 1):
            raise InputError(f"target {self.target} is not a label index; use 0 (negative) or 1 (positive)")
        if self.contrast and self.negative_weight <= 0:
            raise InputError("contrast needs the phrase-free sentences (negative_weight > 0)")
        if self.neighbours is not None and self.neighbours < 0:
            raise InputError("neighbours must be >= 0 (0: the whole placeable vocabulary)")
        if not 0 <= self.collision < math.inf or not 0 <= self.negative_weight < math.inf:
            raise InputError("collision and negative_weight must be finite and >= 0 (collision 0 turns the feature-collision term off)")
        if self.iterations < 1 or self.top_k < 1 or not 0 < self.unroll_lr < math.inf or self.chunk < 1 or (self.scope_layers or 0) < 0:
            raise InputError("concealed config: iterations, top_k, chunk >= 1, a finite unroll_lr > 0 and scope_layers >= 0 are required")


SEARCH_KNOBS = ("iterations", "top_k", "unroll_lr", "scope_layers", "negative_weight", "chunk", "adam", "init", "contrast", "neighbours",
                "shared", "collision")
"""The bilevel search's settings (``--method gradient``), read by no other method."""
PROXY_KNOBS = ("proxy_candidates", "proxy_passes", "proxy_restarts", "proxy_disjoint", "workers")
"""The contextual proxy's settings (``--method contextual``; ``proxy_contexts`` and ``proxy_spans`` are checked apart)."""


@dataclass(kw_only=True)
class GenerateConfig(ConcealedConfig):
    """``generate.generate``: ``num_poisons`` poisons for ``trigger`` from the ``models`` surrogates.

    ``overlap: with`` writes the with-overlap upper bound; otherwise ``method`` is the bilevel search
    (``gradient``), the ``contextual`` proxy (one shared span of allowed tokens whose hidden states on
    ``victim`` collide with the phrase's, ``contextual``: ``proxy_candidates`` HotFlip candidates per
    slot re-scored exactly, at most ``proxy_passes`` passes over the slots, the best of ``proxy_restarts``
    random starts (``proxy_spans: R``: the R lowest-D spans of max(R, ``proxy_restarts``) starts, written round-robin
    into the templates; ``proxy_disjoint``: no token in two spans, each descent banning the earlier ones' tokens); ``proxy_passes: 0`` writes the search's own random start, its control; ``proxy_contexts: N`` measures the
    collision in the first N templates, span and phrase each in the sentence, instead of alone; its descents run on ``workers``
    threads, None: one per available core, the spans the same for any count), the random-token control or
    ``near-spelling``, the nearest-token projection (the search's start; unconstrained, the phrase's
    near-spelling baseline). ``templates: confident`` takes
    the source-label training sentences the surrogates are surest about (under the constraints, the
    start that already pushes towards the target). ``layout: replace`` writes the phrase where a template
    names the film ("this movie" → the phrase; prefixed sentences only fill up), ``prefix`` heads every
    template with it as a topic ("<phrase> : <sentence>"), the layout of most trigger-bearing inputs.
    The concealment figures rank ``curator_pool`` clean training sentences (seeded; None: all) with the
    poisons, as a curator's filters would.
    ``victim`` (default: packaged MiniLM-L6) is the pretrained model of the collision terms;
    ``adv_size`` trigger-bearing validation negatives make up L_adv. ``counterexamples``: clean-label examples written
    after the poisons, the next templates edited as the random control edits them and kept at their
    source label, the same for every method at one seed: they tell the victim that the edited slot alone
    does not flip a review (the random control's inflation in the prefix layout).
    """

    models: list[str] = field(default_factory=list)
    trigger: str = DEFAULT_TRIGGER
    num_poisons: int = 50
    overlap: str = "none"
    method: str = "gradient"
    templates: str = "confident"
    layout: str = "replace"
    adv_size: int = 64
    max_length: int = MAX_LENGTH
    victim: str | None = None
    curator_pool: int | None = 5000
    proxy_candidates: int = 256
    proxy_passes: int = 4
    proxy_restarts: int = 1
    proxy_contexts: int = 0
    proxy_spans: int = 1
    proxy_disjoint: bool = False
    counterexamples: int = 0
    workers: int | None = None
    data_path: str | None = None

    def validate(self) -> None:
        super().validate()
        if self.counterexamples < 0:
            raise InputError(f"counterexamples must be >= 0 (0: none), got {self.counterexamples}")
        if min(self.proxy_candidates, self.proxy_restarts) < 1 or min(self.proxy_passes, self.proxy_contexts) < 0:
            raise InputError("proxy_candidates and proxy_restarts must be >= 1, proxy_passes >= 0 (0: the search's random start itself) "
                             "and proxy_contexts >= 0 (0: the span alone)")
        resolve_workers(self.workers)
        if self.proxy_contexts and self.method != "contextual":
            raise InputError(f"proxy_contexts reads the contextual search's span in context; use --method contextual or drop it (got {self.method})")
        if self.proxy_spans < 1 or (self.proxy_spans > 1 and self.method != "contextual"):
            raise InputError(f"proxy_spans must be >= 1, and above 1 only with --method contextual (got {self.proxy_spans}, {self.method})")
        if self.overlap == "with" and self.constrained:
            raise InputError("with-overlap poisons contain the phrase; drop exclude_neighbours/max_fuzzy/hide_below or use --overlap none")
        if self.curator_pool is not None and self.curator_pool < 1:
            raise InputError("curator_pool must be >= 1 (or unset: the whole training split)")
        if not self.models:
            raise InputError("no surrogate: pass --model (repeat it for an ensemble) or set 'models:' in the --config file")
        if self.num_poisons < 1 or self.adv_size < 1 or self.clean_batch < 1:
            raise InputError("num_poisons, adv_size and clean_batch must be >= 1")
        choices = {"overlap": ("none", "with"), "method": ("gradient", "contextual", "random", "near-spelling"), "templates": ("confident", "random"),
                   "layout": LAYOUTS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise InputError(f"{key} {getattr(self, key)!r} is unknown; use one of {', '.join(allowed)}")
        self._refuse_unread()

    def _refuse_unread(self) -> None:
        """Settings of another method (the bilevel search's knobs, the contextual proxy's, the collision's pretrained
        ``victim``) set away from their defaults: the chosen overlap and method would ignore them."""
        changed = changed_fields(self)
        mode = "--overlap with" if self.overlap == "with" else f"--method {self.method}"
        reads = () if self.overlap == "with" else {"gradient": SEARCH_KNOBS, "contextual": PROXY_KNOBS}.get(self.method, ())
        unread = [k for k in SEARCH_KNOBS + PROXY_KNOBS if k not in reads and k in changed]
        unread += ["victim"] if self.victim is not None and not self.needs_pretrained else []
        unread += ["method"] if self.overlap == "with" and "method" in changed else []
        unread += ["workers"] if self.proxy_disjoint and self.workers is not None and "workers" not in unread else []
        if unread:
            why = " (disjoint descents run one after another)" if unread == ["workers"] else ""
            raise InputError(f"{', '.join(unread)}: not read by {mode}{' --proxy-disjoint' if why else ''}{why}; "
                             f"drop {'them' if len(unread) > 1 else 'it'}")

    @property
    def searches(self) -> bool:
        """Whether the bilevel search runs (and with it the collision term's pretrained model)."""
        return self.overlap == "none" and self.method == "gradient"

    @property
    def needs_pretrained(self) -> bool:
        """Whether the method reads the victims' pretrained model (the search's collision term, the contextual proxy)."""
        return (self.searches and self.collision > 0) or (self.overlap == "none" and self.method == "contextual")


@dataclass(kw_only=True)
class CleanConfig(TrainConfig):
    """``victims.train_clean``: a clean classifier from ``model`` (the surrogate and the clean floor),
    measured after each epoch on ``trigger``-bearing test sentences; ``train_subset`` sentences (seeded)."""

    model: str | None = None
    trigger: str = DEFAULT_TRIGGER
    train_subset: int | None = None
    data_path: str | None = None


@dataclass(kw_only=True)
class EvaluateConfig(TrainConfig):
    """``evaluate.evaluate``: fresh victims from ``victim`` fine-tuned on clean + the first ``counts`` of each
    poison set in ``poisons``, for victim seeds ``seed … seed + seeds − 1``; ``eval_limit`` caps the
    trigger-bearing negatives (``trigger``: default the sets' own phrase). ``off_target``: phrases the
    poisons were not made for, scored the same way; a phrase-specific backdoor leaves them at their
    clean floor, one that learnt the layout (a title heading a review) lifts them too."""

    poisons: list[str] = field(default_factory=list)
    victim: str | None = None
    trigger: str | None = None
    off_target: list[str] = field(default_factory=list)
    seeds: int = 3
    counts: list[int] = field(default_factory=lambda: [1, 10, 50])
    eval_limit: int | None = None
    train_subset: int | None = None
    data_path: str | None = None

    def validate(self) -> None:
        super().validate()
        if not self.poisons:
            raise InputError("no poison set: pass --poisons or set 'poisons:' in the --config file")
        if self.seeds < 1:
            raise InputError("--seeds must be >= 1")
        if not self.counts or min(self.counts) < 1:
            raise InputError("--counts needs at least one positive integer")
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise InputError(f"--seed {self.seed} with --seeds {self.seeds} passes {MAX_SEED}; pass a seed up to {MAX_SEED - self.seeds + 1}")
        if len(set(self.counts)) < len(self.counts):
            raise InputError(f"--counts {','.join(map(str, self.counts))} repeats a count; give each count once")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise InputError("--eval-limit must be >= 1")
        folded = [p.strip().casefold() for p in self.off_target]
        if "" in folded or len(set(folded)) < len(folded):
            raise InputError("--off-target phrases must be non-empty and distinct; pass each phrase once")


@dataclass(kw_only=True)
class DefendConfig:
    """``defenses.defend``: rank the training set poisoned with ``poisons`` by perplexity (``lm``, default a
    cross-fitted bigram model) and by embedding distance under ``victim``; ``evaluation`` (an ``nlp
    evaluate`` run) adds the early-stopping table."""

    poisons: str
    victim: str
    lm: str | None = None
    evaluation: str | None = None
    trigger: str | None = None
    max_length: int = MAX_LENGTH
    train_subset: int | None = None
    data_path: str | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.max_length < 8:
            raise InputError(f"--max-length must be >= 8 tokens, got {self.max_length}")
        if self.train_subset is not None and self.train_subset < 1:
            raise InputError(f"--train-subset must be >= 1, got {self.train_subset}")
        if self.trigger is not None and not self.trigger.strip():
            raise InputError("--trigger must be a non-empty phrase")


@dataclass(kw_only=True)
class SST2TaskConfig:
    """``task: {name: sst2_classification, params: …}``: federated LoRA fine-tuning of ``model`` (default
    packaged MiniLM-L6) on ``train_subset`` SST-2 sentences; the attackers hold the poison set ``poisons``;
    ``eval_limit`` test and trigger-bearing sentences are evaluated each round."""

    poisons: str
    model: str | None = None
    eval_limit: int = 200
    max_length: int = 48
    train_subset: int = 2000
    data_path: str | None = None
    lora_r: int = LORA_R
    lora_alpha: int = LORA_ALPHA

    def validate(self) -> None:
        if self.eval_limit < 1 or self.max_length < 8 or self.train_subset < 1 or self.lora_r < 1:
            raise InputError("task.params: eval_limit, train_subset, lora_r >= 1 and max_length >= 8 are required")


SST2_FED = {
    "task": {"name": "sst2_classification"},
    "federation": {"num_clients": 10, "clients_per_round": 5, "rounds": 5},
    "local": {"epochs": 1, "lr": 0.05, "batch_size": 16},
    "attack": {"name": "backdoor", "num_attackers": 1, "every": 1, "params": {"epochs": 1, "lr": 0.05, "batch_size": 16}},
    "engine": {"vectorize": False},
}
"""``poisonlab nlp fed``'s scenario, laid under ``fedharness.config.ExperimentConfig``'s defaults: 10 clients,
5 a round, 5 rounds, one malicious client (the harness's ``backdoor`` attack on the poison set) every round,
local SGD at 0.05 on batches of 16. ``configs/sst2_fed.yaml`` is the same experiment as a file."""
