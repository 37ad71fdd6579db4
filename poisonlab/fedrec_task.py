"""Builder of the ``recommendation`` federated task (registered in ``poisonlab.fed_run.TASKS``)."""

from __future__ import annotations

from fedharness.config import ExperimentConfig
from fedrec.interactions import from_columns, leave_one_out
from fedrec.task import RecConfig, RecommendationTask, choose_targets
from labcore.errors import InputError
from poisonlab import data

REC_DATASETS = ("movielens",)


def build_recommendation_task(cfg: ExperimentConfig) -> RecommendationTask:
    """Fed-MF/Fed-NCF on ``cfg.data`` (validated before any output is written).

    Clients: ``attack.num_attackers`` attacker slots, then one per user, so ``federation.num_clients``
    must equal users + attackers."""
    rc = RecConfig.from_params(cfg.task.params)
    if cfg.data.name not in REC_DATASETS:
        raise InputError(f"data.name {cfg.data.name!r} is not an interaction data set; use one of {', '.join(REC_DATASETS)}")
    if cfg.engine.name != "inprocess":
        raise InputError("task recommendation runs on engine.name: inprocess only (its clients train vectorized in one process)")
    interactions, raw_items = from_columns(data.load(cfg.data.name, cfg.data.path)["train"].to_dict(), rc.min_rating)
    split = leave_one_out(interactions, rc.eval_negatives, cfg.seed)
    num_fake = cfg.attack.num_attackers if cfg.attack.name != "none" else 0
    if cfg.federation.num_clients != split.num_users + num_fake:
        raise InputError(f"federation.num_clients must be {split.num_users + num_fake}: {split.num_users} users of "
                         f"{cfg.data.name} + {num_fake} attacker slot(s) (attack.num_attackers)")
    targets = choose_targets(split, rc, raw_items, cfg.seed)
    return RecommendationTask(split, rc, targets, num_fake, cfg.local, cfg.seed)
