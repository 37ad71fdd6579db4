"""The benchmark on scikit-learn digits: verdicts, resume equals an uninterrupted run, summary."""

from __future__ import annotations

import pytest

from unlearning_verify import bench, training


@pytest.fixture(scope="module")
def digits(data_dir):
    from poisonlab import data

    ds = data.load("digits")
    return (*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))


def config() -> bench.BenchConfig:
    return bench.BenchConfig(families=["lsb"], behaviours=["retrain", "noop", "stale"], seeds=[0], num_owners=4,
                             train=training.TrainConfig(epochs=30, lr=5e-3, batch_size=32), marking_cost_seeds=1)


def test_resumed_benchmark_equals_uninterrupted(digits, tmp_path):
    x, y, xt, yt = digits
    full: list[dict] = []
    bench.run(config(), x, y, xt, yt, 10, set(), full.append, cache=bench.ModelCache(tmp_path / "a"))
    assert [r["behaviour"] for r in full] == ["retrain", "noop", "stale"]
    by = {r["behaviour"]: r for r in full}
    assert by["noop"]["verdict"] == "NOT HONORED" and by["retrain"]["verdict"] == "HONORED"
    assert by["noop"]["queries"] == 30 and by["noop"]["sprt_queries"] < 30
    # interrupted after the first trial; the resumed run computes only the missing ones, from its cache
    first: list[dict] = []
    cfg = config()
    cfg.behaviours = ["retrain"]
    bench.run(cfg, x, y, xt, yt, 10, set(), first.append, cache=bench.ModelCache(tmp_path / "b"))
    rest: list[dict] = []
    bench.run(config(), x, y, xt, yt, 10, {("lsb", "retrain", 0)}, rest.append, cache=bench.ModelCache(tmp_path / "b"))
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}
    assert [strip(r) for r in first + rest] == [strip(r) for r in full]
    summary = {s["behaviour"]: s for s in bench.summarise(full)}
    assert summary["retrain"]["fpr"] == 0.0 and summary["noop"]["fnr"] == 0.0
    assert summary["noop"]["not_honored"] == 1.0
