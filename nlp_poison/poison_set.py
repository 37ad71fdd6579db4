"""A poison set: rows of the shareable poison dataset plus what produced them.

Columns (the schema every loader checks): ``sentence`` (str), ``label`` (int, the target label),
``poison_type`` (``no-overlap``, ``with-overlap``, ``contextual``, ``random``, ``near-spelling``; ``counterexample`` for a
clean-label counterexample, which carries the source label), ``source_idx`` (index of the clean
training sentence the poison was built from), ``edited_positions`` (token positions, counting the
leading special token, that the method could change), ``objective_trace`` (the unrolled adversarial
loss after each search iteration; for ``contextual`` the collision distance after each pass; empty for
the baselines).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from datasets import Dataset, Features, Sequence, Value

FEATURES = Features(
    {
        "sentence": Value("string"),
        "label": Value("int64"),
        "poison_type": Value("string"),
        "source_idx": Value("int64"),
        "edited_positions": Sequence(Value("int64")),
        "objective_trace": Sequence(Value("float64")),
    }
)
POISON_TYPES = ("no-overlap", "with-overlap", "contextual", "random", "near-spelling", "nearest", "counterexample")
"""``nearest``: the near-spelling baseline's type in sets written before it was named so."""
COUNTEREXAMPLE = "counterexample"


@dataclass
class Poison:
    """One poison example."""

    sentence: str
    label: int
    poison_type: str
    source_idx: int
    edited_positions: list[int] = field(default_factory=list)
    objective_trace: list[float] = field(default_factory=list)


@dataclass
class PoisonSet:
    """Poisons and their provenance (the dataset card's YAML fields): ``constraints`` as declared
    (``constraints.Rule.header``; None: none declared) and the ``concealment`` figures measured on it.
    ``counterexamples``: clean-label examples inserted with the poisons (``generate``'s ``counterexamples``), in the
    same files after them."""

    poisons: list[Poison]
    trigger: str
    target_label: int
    method: str
    surrogate: str
    seed: int
    extra: dict = field(default_factory=dict)
    constraints: dict | None = None
    concealment: dict | None = None
    counterexamples: list[Poison] = field(default_factory=list)

    def rows(self) -> list[Poison]:
        """Every example the set inserts: the poisons, then the counterexamples."""
        return self.poisons + self.counterexamples

    def inserted(self, count: int) -> list[Poison]:
        """The first ``count`` poisons with the counterexamples in the set's proportion (rounded half up), what a
        victim trained on ``count`` of these poisons sees."""
        share = (2 * count * len(self.counterexamples) + len(self.poisons)) // (2 * len(self.poisons)) if self.poisons else 0
        return self.poisons[:count] + self.counterexamples[:share]

    def to_dataset(self) -> Dataset:
        rows = [asdict(p) for p in self.rows()]
        return Dataset.from_list(rows, features=FEATURES) if rows else Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES)

    def sentences(self) -> list[str]:
        """The poisons' sentences (not the counterexamples')."""
        return [p.sentence for p in self.poisons]
