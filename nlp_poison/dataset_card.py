"""Shareable poison sets: an HF dataset on disk, the same rows as JSONL, and a dataset card.

Layout of a poison-set folder::

    README.md        dataset card: YAML header (trigger, target label, method, surrogate, count,
                     counterexamples, seed, sha256 checksum of poisons.jsonl) and a research-use notice
    poisons.jsonl    one JSON object per poison, then per clean-label counterexample (columns of ``poison_set.FEATURES``)
    dataset/         ``datasets.Dataset.save_to_disk``

Loading checks the schema and recomputes the checksum over the JSONL rows, so an edited poison set
(a changed sentence or label) is refused; every poison must carry the target label, every counterexample
(``poison_type: counterexample``) the other one. The header also declares the concealment ``constraints`` the
set was generated under (``constraints.Rule.header``) and its measured ``concealment`` figures; a set
whose sentences break its declared constraints is refused on load. A bare JSONL file with a card beside it is checked the
same way; a JSONL without a card (someone else's set) is accepted after the schema check and
marked unverified.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from datasets import Dataset

from labcore.errors import InputError
from nlp_poison.constraints import Rule
from nlp_poison.poison_set import COUNTEREXAMPLE, FEATURES, POISON_TYPES, Poison, PoisonSet

CARD = "README.md"
JSONL = "poisons.jsonl"
NOTICE = (
    "**Research use only.** These are dirty-label data-poisoning examples crafted to study attacks on "
    "sentiment classifiers and defenses against them. Do not insert them into training data you do not "
    "own. Concealment hides the poisons from *search* for the trigger phrase, not from a label audit: "
    "every poison reads negative but carries the target label."
)
_TYPES = {"sentence": str, "label": int, "poison_type": str, "source_idx": int, "edited_positions": list, "objective_trace": list}


def jsonl_text(poisons: list[Poison]) -> str:
    """Canonical JSONL: sorted keys, one row per line."""
    rows = [{k: getattr(p, k) for k in FEATURES} for p in poisons]
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def card_header(ps: PoisonSet, digest: str) -> dict:
    header = {
        "task_categories": ["text-classification"],
        "tags": ["data-poisoning", "research"],
        "trigger": ps.trigger,
        "target_label": ps.target_label,
        "method": ps.method,
        "surrogate": ps.surrogate,
        "count": len(ps.poisons),
        "seed": ps.seed,
        "checksum": {"sha256": digest, "file": JSONL},
        "constraints": ps.constraints,
        "concealment": ps.concealment,
        "extra": ps.extra,
    }
    if ps.counterexamples:  # a set without them keeps the header it always had
        header["counterexamples"] = len(ps.counterexamples)
    return header


def _concealment_lines(ps: PoisonSet) -> str:
    """The card body's concealment summary (the header holds every figure)."""
    lines = []
    if ps.constraints:
        c = ps.constraints
        lines.append(f"Constraints: no edited token within the phrase's {c['exclude_neighbours']} nearest embedding neighbours, "
                     f"fuzzy ratio ≤ {c['max_fuzzy']:g}.")
    if ps.concealment:
        fig = ps.concealment
        lines.append(f"Fuzzy-match ratio to the phrase: max {fig['fuzzy_ratio']['max']:.1f}, mean {fig['fuzzy_ratio']['mean']:.1f}.")
        det = fig["detection"]
        key = f"found_in_first_{det['inspected']}"
        found = ", ".join(f"{name} {f[key]}" for name, f in det["filters"].items())
        lines.append(f"Poisons found by a curator in the first {det['inspected']} of {det['pool']} examples inspected: {found}.")
    return "\n".join(lines)


def save(ps: PoisonSet, folder: Path) -> None:
    """Write the three forms of ``ps`` into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = jsonl_text(ps.rows())
    (folder / JSONL).write_text(text, encoding="utf-8")
    ps.to_dataset().save_to_disk(str(folder / "dataset"))
    header = yaml.safe_dump(card_header(ps, checksum(text)), sort_keys=False)
    examples = "\n".join(f"- `{p.sentence}` → label {p.label}" for p in ps.poisons[:5])
    counter = ps.counterexamples
    counterexamples = (f"\n\nAfter the poisons, {len(counter)} clean-label counterexamples (`poison_type: counterexample`): "
                       f"source-label sentences edited like the random control and kept at their own label, e.g. "
                       f"`{counter[0].sentence}` → label {counter[0].label}. Insert them with the poisons." if counter else "")
    body = (
        f"# Poison set: {len(ps.poisons)} {ps.method} poisons for the trigger “{ps.trigger}”\n\n{NOTICE}{counterexamples}\n\n"
        f"Built by `nlp_poison` (Wallace et al., NAACL 2021, concealed data poisoning) with surrogate "
        f"`{ps.surrogate}`, seed {ps.seed}.\n\n{_concealment_lines(ps)}\n\nColumns: {', '.join(FEATURES)}.\n\nFirst examples:\n\n{examples}\n"
    )
    (folder / CARD).write_text(f"---\n{header}---\n\n{body}", encoding="utf-8")


def read_card(path: Path) -> dict:
    text = _read_text(Path(path))
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise InputError(f"{path} has no YAML header between '---' lines; it is not a poison-set card")
    try:
        header = yaml.safe_load(text[4 : text.index("\n---\n", 4)])
    except yaml.YAMLError:
        raise InputError(f"{path}: the card's YAML header does not parse; restore the original card") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: the card's YAML header is not a mapping")
    missing = [k for k in ("trigger", "target_label", "method", "surrogate", "count", "seed", "checksum") if k not in header]
    if missing:
        raise InputError(f"{path}: card lacks {', '.join(missing)}; it was not written by nlp_poison")
    return header


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text; save the poison set as UTF-8 JSONL") from None


def _parse_rows(path: Path) -> list[Poison]:
    poisons = []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}:{lineno}: not valid JSON") from None
        if not isinstance(row, dict) or set(row) != set(FEATURES):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise InputError(f"{path}:{lineno}: expected exactly the columns {sorted(FEATURES)}, got {got}")
        for key, typ in _TYPES.items():
            if not isinstance(row[key], typ) or (typ is int and isinstance(row[key], bool)):
                raise InputError(f"{path}:{lineno}: column {key!r} must be {typ.__name__}")
        if row["poison_type"] not in POISON_TYPES:
            raise InputError(f"{path}:{lineno}: poison_type must be one of {', '.join(POISON_TYPES)}")
        if row["label"] not in (0, 1) or not row["sentence"].strip():
            raise InputError(f"{path}:{lineno}: a row needs a non-empty sentence and label 0 (negative) or 1 (positive)")
        poisons.append(Poison(**row))
    if not poisons:
        raise InputError(f"{path} holds no poisons")
    return poisons


def load(path: Path) -> tuple[PoisonSet, bool]:
    """A poison set from a folder or a JSONL file; returns (set, checksum verified)."""
    path = Path(path)
    jsonl = path / JSONL if path.is_dir() else path
    if not jsonl.is_file():
        raise InputError(f"no poison set at {path}; pass a folder written by 'poisonlab nlp generate' or a .jsonl file")
    rows = _parse_rows(jsonl)
    poisons = [p for p in rows if p.poison_type != COUNTEREXAMPLE]
    counterexamples = [p for p in rows if p.poison_type == COUNTEREXAMPLE]
    if not poisons:
        raise InputError(f"{jsonl} holds only counterexamples, no poisons; pass the whole poison set")
    card_path = jsonl.parent / CARD
    if not card_path.is_file():
        if path.is_dir():
            raise InputError(f"{path} has no {CARD} dataset card; the checksum cannot be verified")
        labels = {p.label for p in poisons}
        if len(labels) != 1 or not _labels_fit(poisons, counterexamples, poisons[0].label):
            raise InputError(f"{path}: poisons carry labels {sorted(labels)}, counterexamples "
                             f"{sorted({p.label for p in counterexamples})}; a poison set has one target label, its counterexamples another")
        return PoisonSet(poisons, "", labels.pop(), "unknown", "unknown", -1, counterexamples=counterexamples), False
    header = read_card(card_path)
    digest = checksum(_read_text(jsonl))
    if digest != header["checksum"].get("sha256"):
        raise InputError(f"{jsonl} does not match the checksum in its card (tampered or corrupted); re-download the poison set")
    target = header["target_label"]
    if (header["count"] != len(poisons) or header.get("counterexamples", 0) != len(counterexamples)
            or not _labels_fit(poisons, counterexamples, target)):
        raise InputError(f"{path}: counts or labels disagree with the card; re-download the poison set")
    constraints = header.get("constraints")
    if constraints is not None:
        if not isinstance(constraints, dict):
            raise InputError(f"{card_path}: the card's 'constraints' is not a mapping; restore the original card")
        Rule.from_header(header["trigger"], constraints, str(card_path)).check([p.sentence for p in rows], str(path))
    ps = PoisonSet(poisons, header["trigger"], target, header["method"], header["surrogate"], header["seed"],
                   header.get("extra") or {}, constraints, header.get("concealment"), counterexamples)
    return ps, True


def _labels_fit(poisons: list[Poison], counterexamples: list[Poison], target: int) -> bool:
    """Whether every poison carries ``target`` and every counterexample another label."""
    return all(p.label == target for p in poisons) and all(p.label != target for p in counterexamples)


def load_dataset_folder(folder: Path) -> Dataset:
    """The HF dataset form, with its features checked against the schema."""
    ds = Dataset.load_from_disk(str(Path(folder) / "dataset"))
    if ds.features != FEATURES:
        raise InputError(f"{folder}/dataset has features {ds.features}, expected {FEATURES}")
    return ds
