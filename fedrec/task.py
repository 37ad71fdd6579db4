"""Federated recommendation as a harness task: every user is a client (Fed-MF / Fed-NCF).

Client ids: ``0 … num_fake−1`` are the attackers' slots (fake or malicious users the attack
controls; a slot that does not attack in a round has no data and uploads no change),
``num_fake + u`` is real user u. The global vector is the item table followed by the shared layers;
an upload changes only the item rows the client touched (its positives and sampled negatives), so
``fedharness.row_sparse`` aggregates each row over its touching clients only.

Our choices (the papers do not pin these down): every client trains every round (FedRecAttack's
epoch); BCE with ``neg_ratio`` fresh uniform negatives per positive each round (NCF's 4); the
evaluation profile uses a fixed negative draw; targets are drawn among items with 1 ≤ train
interactions ≤ ``target_max_popularity`` unless ``target_items`` (raw ids) are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from fedharness.local_training import Batch, LocalConfig
from fedharness.params import split_vector
from fedharness.row_sparse import RowBlock
from fedrec import local, local_ncf, metrics, models
from fedrec.interactions import Split, sample_unseen
from labcore.errors import InputError

EVAL_PROFILE_SALT = 31_337
TARGET_SALT = 4_243


@dataclass
class RecConfig:
    """Knobs of the recommendation task (``task.params`` in YAML)."""

    model: str = "mf"
    dim: int = 32
    init_std: float = 0.1
    neg_ratio: int = 4
    user_steps: int = 20
    user_lr: float = 1.0
    user_reg: float = 0.01
    eval_negatives: int = 99
    hr_k: int = 10
    er_ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    num_targets: int = 1
    target_items: list[int] | None = None
    target_max_popularity: int = 10
    min_rating: float = 0.0
    chunk: int = 64

    def validate(self) -> None:
        for k in [self.hr_k, *self.er_ks]:
            metrics.check_k(k, "task.params.hr_k and er_ks entries")
        checks = [
            (self.neg_ratio >= 1, "task.params.neg_ratio must be >= 1"),
            (self.user_steps >= 1 and self.user_lr > 0 and self.user_reg >= 0,
             "task.params.user_steps >= 1, user_lr > 0 and user_reg >= 0 are required"),
            (self.num_targets >= 1, "task.params.num_targets must be >= 1"),
            (self.chunk >= 1, "task.params.chunk must be >= 1"),
            (self.init_std > 0, "task.params.init_std must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


def choose_targets(split: Split, cfg: RecConfig, raw_item_ids: np.ndarray, seed: int) -> list[int]:
    """Dense ids of the target items: the given raw ids, or cold items drawn with ``seed``."""
    if cfg.target_items is not None:
        lookup = {int(r): i for i, r in enumerate(raw_item_ids)}
        missing = [t for t in cfg.target_items if int(t) not in lookup]
        if missing:
            raise InputError(f"task.params.target_items {missing} are not item ids of the data set")
        return [lookup[int(t)] for t in cfg.target_items]
    pop = split.popularity()
    pool = np.flatnonzero((pop >= 1) & (pop <= cfg.target_max_popularity))
    if len(pool) < cfg.num_targets:
        raise InputError(f"only {len(pool)} items have 1..{cfg.target_max_popularity} train interactions; "
                         "raise task.params.target_max_popularity or lower num_targets")
    return sorted(np.random.default_rng([seed, TARGET_SALT]).choice(pool, cfg.num_targets, replace=False).tolist())


class RecommendationTask:
    """The harness's Task protocol plus ``train_clients`` (vectorized local training) and ``row_blocks``."""

    def __init__(self, split: Split, cfg: RecConfig, targets: list[int], num_fake: int, local_cfg: LocalConfig, seed: int) -> None:
        self.split, self.cfg, self.targets, self.num_fake, self.seed = split, cfg, targets, num_fake, seed
        self.hyper = local.Hyper(cfg.user_steps, cfg.user_lr, cfg.user_reg, local_cfg.epochs, local_cfg.lr)
        self.model: nn.Module | None = None
        self.last_users: torch.Tensor | None = None
        self.round_users: torch.Tensor | None = None
        self.eval_profiles = [self.profile(u, int(np.random.SeedSequence([seed, EVAL_PROFILE_SALT, u]).generate_state(1)[0]))
                              for u in range(split.num_users)]
        self._seen = torch.zeros(split.num_users, split.num_items, dtype=torch.bool)
        for u, its in enumerate(split.train):
            self._seen[u, torch.from_numpy(its)] = True
        eligible = torch.ones(split.num_users, len(targets), dtype=torch.bool)
        for u, its in enumerate(split.interacted):
            eligible[u] = torch.from_numpy(~np.isin(targets, its))
        self._eligible = eligible
        self._candidates = torch.from_numpy(np.concatenate([split.test_item[:, None], split.test_negatives], axis=1))

    @property
    def num_clients(self) -> int:
        return self.num_fake + self.split.num_users

    # --- harness Task protocol -------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        self.model = models.build(self.cfg.model, self.split.num_items, self.cfg.dim, self.cfg.init_std)
        return self.model

    def federated_names(self, model: nn.Module) -> list[str]:
        """Item table and shared layers; there is no user parameter to leave out."""
        return [n for n, _ in model.named_parameters()]

    def row_blocks(self, model: nn.Module) -> list[RowBlock]:
        """The item table (first in the vector) is row-sparse: one row per item."""
        return [RowBlock(0, model.item.shape[0], model.item.shape[1])]

    def per_sample_loss(self, model: nn.Module, state: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """BCE of (user vector, item, label) samples, for harness paths that score a batch."""
        shared = {k: v for k, v in state.items() if k != "item"}
        items = state["item"][batch["item"]]
        s = vmap(lambda u, q: models.score(model, shared, u, q.unsqueeze(0)))(batch["user"], items).squeeze(1)
        return F.binary_cross_entropy_with_logits(s, batch["label"].float(), reduction="none")

    def partition_labels(self) -> np.ndarray:
        return np.zeros(self.num_clients, dtype=np.int64)

    def client_data(self, indices: np.ndarray) -> Batch:
        """Client ids of a shard (recommendation clients hold their profile in ``profile``)."""
        return {"client": torch.as_tensor(np.asarray(indices), dtype=torch.long)}

    def poisoned_data(self, data: Batch, seed: int) -> Batch:
        return data

    # --- clients ---------------------------------------------------------------------------------
    def is_fake(self, client: int) -> bool:
        return client < self.num_fake

    def profile(self, user: int, seed: int) -> local.Profile:
        """Real user ``user``'s positives and ``neg_ratio`` fresh negatives per positive."""
        pos = self.split.train[user]
        return self.fabricated_profile(pos, seed)

    def fabricated_profile(self, positives: np.ndarray, seed: int) -> local.Profile:
        """A profile for any positive set (fake users fabricate theirs)."""
        if len(positives) == 0:
            raise InputError("a user profile needs at least one positive item; an empty user cannot train")
        neg = sample_unseen(np.random.default_rng(seed), positives, self.split.num_items, self.cfg.neg_ratio * len(positives))
        items = np.concatenate([positives, neg])
        return items, np.concatenate([np.ones(len(positives)), np.zeros(len(neg))])

    def parts(self, global_vec: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(item table, shared layers) as views of ``global_vec``."""
        params = split_vector(global_vec, self.model, self.federated_names(self.model))
        return params.pop("item"), params

    def train_profiles(self, global_vec: torch.Tensor, profiles: list[local.Profile]) -> torch.Tensor:
        """Local vectors (c, d) of clients training honestly on ``profiles``."""
        item, shared = self.parts(global_vec)
        out = global_vec.unsqueeze(0).repeat(len(profiles), 1)
        if isinstance(self.model, models.MF):
            key, deltas, self.last_users = local.mf_train_profiles(self.hyper, item, profiles)
        else:
            key, deltas, d_shared, self.last_users = local_ncf.train_profiles(self.model, self.hyper, item, shared, profiles, self.cfg.chunk)
            out[:, item.numel():] += d_shared
        table = out[:, : item.numel()].view(len(profiles), *item.shape)
        table[key // item.shape[0], key % item.shape[0]] += deltas
        return out

    def train_clients(self, global_vec: torch.Tensor, clients: list[int], seeds: list[int], cfg: LocalConfig) -> torch.Tensor:
        """The harness's local-training hook. Real users train on their profiles; an attacker slot
        sampled in a round without attack has no data and uploads no change."""
        real = [(i, c - self.num_fake, s) for i, (c, s) in enumerate(zip(clients, seeds)) if not self.is_fake(c)]
        profiles = [self.profile(u, s) for _, u, s in real]
        if len(real) == len(clients):
            out = self.train_profiles(global_vec, profiles)
        else:
            out = global_vec.unsqueeze(0).repeat(len(clients), 1)
            if real:
                out[[i for i, _, _ in real]] = self.train_profiles(global_vec, profiles)
        complete = self.last_users is not None and len(real) == self.split.num_users
        self.round_users = self.last_users[torch.tensor([u for _, u, _ in real]).argsort()] if complete else None
        return out

    def fit_users(self, global_vec: torch.Tensor, profiles: list[local.Profile]) -> torch.Tensor:
        item, shared = self.parts(global_vec)
        if isinstance(self.model, models.MF):
            return local.mf_fit_users(self.hyper, item, profiles)
        return local_ncf.fit_users(self.model, self.hyper, item, shared, profiles, self.cfg.chunk)

    def all_scores(self, global_vec: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Scores (U, I) of every item for the user vectors ``users``."""
        item, shared = self.parts(global_vec)
        if isinstance(self.model, models.MF):
            return vmap(lambda u: models.score(self.model, shared, u, item))(users)
        return local_ncf.all_scores(self.model, shared, users, item, self.cfg.chunk)

    # --- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """HR@K/NDCG@K (99-negative leave-one-out) and ER@K of the targets, ranked on each client's
        device: with the user vector it fitted in this round's training when every user trained,
        else with one fitted to its fixed evaluation profile."""
        global_vec = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
        users = self.round_users if self.round_users is not None else self.fit_users(global_vec, self.eval_profiles)
        self.round_users = None
        scores = self.all_scores(global_vec, users)
        hr, ndcg = metrics.hit_ndcg(scores.gather(1, self._candidates), self.cfg.hr_k)
        out = {f"hr@{self.cfg.hr_k}": hr, f"ndcg@{self.cfg.hr_k}": ndcg}
        for k in self.cfg.er_ks:
            out[f"er@{k}"] = metrics.exposure_ratio(scores, self._seen, self.targets, self._eligible, k)
        out["main_accuracy"] = hr
        out["attack_success_rate"] = out[f"er@{self.cfg.er_ks[0]}"]
        return out
