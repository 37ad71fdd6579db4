"""The naive floors: fake users who train honestly on fabricated profiles that contain the targets.

- ``random_fake_users``: targets + ``filler_size`` items drawn uniformly (random attack).
- ``bandwagon_fake_users``: targets + ``filler_size`` items drawn from the ``popular_pool`` most
  popular train items (bandwagon attack; popularity is public knowledge here, our choice).

Each fake user draws its profile once per round from its own seed and uploads what honest local
training on it produces: no scaling, no crafted gradient. Any real attack must beat these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedharness.attacks import AttackContext, register
from fedrec._attack import random_profiles, rec_task
from labcore.errors import InputError


@dataclass
class FakeUsers:
    filler_size: int = 20
    popular_pool: int = 0
    knowledge = "own"

    def __post_init__(self) -> None:
        if self.filler_size < 1 or self.popular_pool < 0:
            raise InputError("fake users need filler_size >= 1 and popular_pool >= 0")

    def __call__(self, ctx: AttackContext) -> torch.Tensor:
        task = rec_task(ctx)
        pool = None
        if self.popular_pool:
            pool = np.argsort(-task.split.popularity(), kind="stable")[: self.popular_pool]
        pool = np.setdiff1d(np.arange(task.split.num_items) if pool is None else pool, task.targets)
        profiles = []
        for seed in ctx.attacker_seeds:
            filler = random_profiles(task, np.random.default_rng(seed), 1, self.filler_size, pool)[0]
            positives = np.sort(np.concatenate([filler, task.targets]))
            profiles.append(task.fabricated_profile(positives, seed))
        return task.train_profiles(ctx.global_vec, profiles)


@register("random_fake_users")
def random_fake_users(filler_size: int = 20) -> FakeUsers:
    return FakeUsers(filler_size=filler_size)


@register("bandwagon_fake_users")
def bandwagon_fake_users(filler_size: int = 20, popular_pool: int = 100) -> FakeUsers:
    if popular_pool < 1:
        raise InputError("bandwagon_fake_users needs popular_pool >= 1")
    return FakeUsers(filler_size=filler_size, popular_pool=popular_pool)
