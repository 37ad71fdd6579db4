"""Fed-NCF learns preferences, not just popularity: a short run beats ItemPop on HR@10."""

import torch

from fedharness import aggregators
from fedharness.local_training import LocalConfig
from fedharness.params import get_vector, set_vector
from fedharness.row_sparse import RowSparse
from fedrec import metrics
from fedrec.interactions import from_columns, leave_one_out
from fedrec.task import RecConfig, RecommendationTask, choose_targets


def test_a_short_fed_ncf_run_beats_item_popularity_on_ml100k_rows():
    from poisonlab import data
    from poisonlab.movielens import columns

    cols = columns(data.load("movielens")["train"])
    keep = (cols["user_id"] <= 150) & (cols["item_id"] <= 400)  # ~8,700 of the shipped ML-100K rows
    interactions, raw_items = from_columns({k: v[keep] for k, v in cols.items()})
    split = leave_one_out(interactions, 99, seed=0)
    cfg, local_cfg = RecConfig(model="ncf", dim=8, target_max_popularity=3), LocalConfig(1, 8.0, 1)
    task = RecommendationTask(split, cfg, choose_targets(split, cfg, raw_items, 0), 0, local_cfg, 0)
    torch.manual_seed(0)
    names = task.federated_names(task.build_model())
    g, mean = get_vector(task.model, names), RowSparse(aggregators.get("mean"), task.row_blocks(task.model))
    clients = list(range(task.num_clients))
    for r in range(6):
        g = g + mean(task.train_clients(g, clients, [1000 * r + c for c in clients], local_cfg) - g)
    set_vector(task.model, names, g)
    task.round_users = None  # rank with user vectors fitted to the final global model
    hr = task.evaluate(task.model)["hr@10"]
    popularity = torch.from_numpy(split.popularity()).float()
    item_pop, _ = metrics.hit_ndcg(popularity[task._candidates], 10)
    assert hr > item_pop + 0.05, (hr, item_pop)
