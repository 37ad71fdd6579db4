"""Builder of the ``recommendation`` federated task (registered in ``poisonlab.fed_run.TASKS``)."""

from __future__ import annotations

from fedharness import aggregators
from fedharness.config import ExperimentConfig
from fedharness.simulation import build_aggregator
from fedrec.interactions import from_columns, leave_one_out
from fedrec.task import RecConfig, RecommendationTask, choose_targets
from labcore.config import from_dict
from labcore.errors import InputError
from poisonlab import data

REC_DATASETS = ("movielens",)


def build_recommendation_task(cfg: ExperimentConfig) -> RecommendationTask:
    """Fed-MF/Fed-NCF on ``cfg.data`` (validated before any output is written).

    Clients: ``federation.num_clients − users`` attacker slots first (at least ``attack.num_attackers``;
    slots the attack does not use stay idle and upload nothing), then one client per user. A grid
    whose attacks differ in size therefore shares one ``num_clients``."""
    rc = from_dict(RecConfig, cfg.task.params, source="task.params")
    rc.validate()
    if cfg.data.name not in REC_DATASETS:
        raise InputError(f"data.name {cfg.data.name!r} is not an interaction data set; use one of {', '.join(REC_DATASETS)}")
    if aggregators.needs(build_aggregator(cfg)) & {"root_update", "validate"}:
        raise InputError(f"aggregator {cfg.aggregator.name!r} needs a server-held training set, which task "
                         "recommendation does not have; use mean, median, trimmed_mean, norm_clip or hierarchical_clip")
    if cfg.engine.name != "inprocess":
        raise InputError("task recommendation runs on engine.name: inprocess only (its clients train vectorized in one process)")
    from poisonlab.movielens import columns

    interactions, raw_items = from_columns(columns(data.load(cfg.data.name, cfg.data.path)["train"]), rc.min_rating)
    split = leave_one_out(interactions, rc.eval_negatives, cfg.seed)
    attackers = cfg.attack.num_attackers if cfg.attack.name != "none" else 0
    if cfg.federation.num_clients < split.num_users + attackers:
        raise InputError(f"federation.num_clients must be at least {split.num_users + attackers}: {split.num_users} users "
                         f"of {cfg.data.name} + {attackers} attacker slot(s) (attack.num_attackers)")
    num_fake = cfg.federation.num_clients - split.num_users
    targets = choose_targets(split, rc, raw_items, cfg.seed)
    return RecommendationTask(split, rc, targets, num_fake, cfg.local, cfg.seed)
