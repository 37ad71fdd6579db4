"""Implicit-feedback interactions: parsing, id remapping, leave-one-out split, evaluation negatives.

Input format: one interaction a line, ``user item rating timestamp`` separated by tabs or spaces
(GroupLens ``u.data``), optionally with a RecBole header line (``user_id:token item_id:token …``).
Every rated pair is a positive (implicit feedback; ``min_rating`` can raise the bar, e.g. 4).

Evaluation protocol (He et al., NCF, WWW 2017, §4.1, and its released ``*.test.negative`` files):
each user's latest interaction (largest timestamp, ties broken by the larger item id) is held out
and ranked among 99 items the user never interacted with, drawn once with a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labcore.errors import InputError

EVAL_SALT = 7_919


@dataclass
class Interactions:
    """Positives as parallel arrays of dense ids (users 0..U−1, items 0..I−1) with timestamps."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int

    def __len__(self) -> int:
        return len(self.users)


def parse_table(text: str, source: str = "interactions") -> dict[str, np.ndarray]:
    """Raw columns ``user_id``, ``item_id`` (int64), ``rating``, ``timestamp`` (float64) of
    ``user item rating [timestamp]`` lines; a RecBole header line is skipped."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and ":" in lines[0].split()[0]:
        lines = lines[1:]
    if not lines:
        raise InputError(f"{source} holds no interactions; expected lines 'user item rating timestamp'")
    table = _fast_table(lines)
    if table is None:
        table = _checked_table(lines, source)
    return {"user_id": table[:, 0].astype(np.int64), "item_id": table[:, 1].astype(np.int64),
            "rating": table[:, 2], "timestamp": table[:, 3]}


def _fast_table(lines: list[str]) -> np.ndarray | None:
    """All lines at once when every line has the same 3 or 4 numeric fields and integer ids; else None."""
    widths = {len(line.split()) for line in lines}
    if len(widths) != 1 or widths.pop() not in (3, 4):
        return None
    try:
        table = np.array(" ".join(lines).split(), dtype=np.float64).reshape(len(lines), -1)
    except ValueError:
        return None
    if not np.array_equal(table[:, :2], np.round(table[:, :2])):
        return None
    return table if table.shape[1] == 4 else np.column_stack([table, np.zeros(len(table))])


def _checked_table(lines: list[str], source: str) -> np.ndarray:
    """Line-by-line parse naming the first bad line."""
    rows = []
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        try:
            if len(parts) < 3:
                raise ValueError
            rows.append((int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]) if len(parts) > 3 else 0.0))
        except ValueError:
            raise InputError(f"{source}: line {lineno} {line[:40]!r} is not 'user item rating timestamp' "
                             "(integer ids, numeric rating); fix or remove it") from None
    return np.asarray(rows, dtype=np.float64)


def from_columns(columns: dict[str, np.ndarray], min_rating: float = 0.0) -> tuple[Interactions, np.ndarray]:
    """Interactions with rating ≥ ``min_rating`` as positives, and the raw item id of each dense item."""
    keep = np.asarray(columns["rating"]) >= min_rating
    if not keep.any():
        raise InputError(f"no rating reaches min_rating {min_rating}; lower task.params.min_rating")
    users, items = np.asarray(columns["user_id"])[keep], np.asarray(columns["item_id"])[keep]
    return from_arrays(users, items, np.asarray(columns["timestamp"], dtype=np.float64)[keep]), np.unique(items)


def from_arrays(raw_users: np.ndarray, raw_items: np.ndarray, timestamps: np.ndarray) -> Interactions:
    """Dense ids for raw ids; duplicate (user, item) pairs keep their latest timestamp."""
    user_ids, users = np.unique(raw_users, return_inverse=True)
    item_ids, items = np.unique(raw_items, return_inverse=True)
    order = np.lexsort((timestamps, items, users))
    users, items, timestamps = users[order], items[order], timestamps[order]
    last = np.ones(len(users), dtype=bool)
    last[:-1] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    return Interactions(users[last], items[last], timestamps[last], len(user_ids), len(item_ids))


@dataclass
class Split:
    """Per-user train positives, the held-out test item and its sampled negatives."""

    train: list[np.ndarray]
    test_item: np.ndarray
    test_negatives: np.ndarray
    interacted: list[np.ndarray]
    num_items: int

    @property
    def num_users(self) -> int:
        return len(self.train)

    def popularity(self) -> np.ndarray:
        """Train interactions per item."""
        return np.bincount(np.concatenate(self.train), minlength=self.num_items)


def leave_one_out(data: Interactions, num_negatives: int = 99, seed: int = 0) -> Split:
    """Hold out each user's latest item; every user needs at least two interactions."""
    if num_negatives < 1 or num_negatives >= data.num_items:
        raise InputError(f"eval_negatives must be in 1..{data.num_items - 1}, got {num_negatives}")
    order = np.lexsort((data.items, data.timestamps, data.users))
    users, items = data.users[order], data.items[order]
    bounds = np.searchsorted(users, np.arange(data.num_users + 1))
    per_user = [items[bounds[u]:bounds[u + 1]] for u in range(data.num_users)]
    short = [u for u, its in enumerate(per_user) if len(its) < 2]
    if short:
        raise InputError(f"{len(short)} user(s) have fewer than 2 interactions (dense id {short[0]}); "
                         "leave-one-out needs one to hold out and one to train on")
    rng = np.random.default_rng([seed, EVAL_SALT])
    negatives = np.stack([sample_unseen(rng, its, data.num_items, num_negatives, replace=False) for its in per_user])
    return Split(
        train=[np.sort(its[:-1]) for its in per_user],
        test_item=np.array([its[-1] for its in per_user]),
        test_negatives=negatives,
        interacted=[np.sort(its) for its in per_user],
        num_items=data.num_items,
    )


def sample_unseen(rng: np.random.Generator, seen: np.ndarray, num_items: int, k: int, replace: bool = True) -> np.ndarray:
    """k items outside ``seen`` (uniform; with or without replacement)."""
    pool_size = num_items - len(np.unique(seen))
    if pool_size <= 0 or (not replace and k > pool_size):
        raise InputError(f"a user interacted with {len(seen)} of {num_items} items; too few unseen items to sample {k}")
    if not replace:
        pool = np.setdiff1d(np.arange(num_items), seen)
        return rng.choice(pool, k, replace=False)
    out = rng.integers(0, num_items, k)
    bad = np.isin(out, seen)
    while bad.any():
        out[bad] = rng.integers(0, num_items, int(bad.sum()))
        bad = np.isin(out, seen)
    return out
