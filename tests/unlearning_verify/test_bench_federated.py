from fedharness.local_training import LocalConfig
from unlearning_verify import bench_federated as bf


def test_federated_trial_rows(data_dir):
    from poisonlab import data

    ds = data.load("digits")
    x, y = data.image_tensors(ds["train"])
    xt, yt = data.image_tensors(ds["test"])
    cfg = bf.FederatedBenchConfig(passive_rounds=[1, 2], num_clients=3, rounds=2,
                                  local=LocalConfig(epochs=1, lr=0.05, batch_size=32), reference=False)
    rows = bf.run_trial(cfg, 0, x, y, xt, yt, 10)
    assert [r["behaviour"] for r in rows] == ["noop", "retrain", "passive_R1", "passive_R2", "federaser"]
    assert all(r["q_high"] >= 0.1 for r in rows)  # held-out owners with the 1/K floor
    assert {r["verdict"] for r in rows} <= {"HONORED", "NOT HONORED", "INCONCLUSIVE"}
    assert not rows[0]["honest"] and all(r["honest"] for r in rows[1:])
    if rows[0]["p_low"] <= rows[0]["q_high"]:
        assert all(r["verdict"] == "INCONCLUSIVE" for r in rows)  # never HONORED when p was not learned
