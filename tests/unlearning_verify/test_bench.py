"""The benchmark on scikit-learn digits: verdicts, resume equals an uninterrupted run, summary.

(Honest-retrain verdicts are tested in test_verify.py and test_cli.py.)
"""

from __future__ import annotations

import pytest

from unlearning_verify import bench, training


@pytest.fixture(scope="module")
def digits(data_dir):
    from poisonlab import data

    ds = data.load("digits")
    return (*data.image_tensors(ds["train"]), *data.image_tensors(ds["test"]))


def config() -> bench.BenchConfig:
    return bench.BenchConfig(families=["lsb"], behaviours=["noop", "stale"], seeds=[0], num_owners=4,
                             train=training.TrainConfig(epochs=30, lr=5e-3, batch_size=32), marking_cost_seeds=0,
                             max_queries=30)


def test_resumed_benchmark_equals_uninterrupted(digits, tmp_path):
    x, y, xt, yt = digits
    full: list[dict] = []
    bench.run(config(), x, y, xt, yt, 10, set(), full.append, cache=bench.ModelCache(tmp_path / "a"))
    assert [r["behaviour"] for r in full] == ["noop", "stale"]
    by = {r["behaviour"]: r for r in full}
    assert by["noop"]["verdict"] == "NOT HONORED" and by["noop"]["p_hat"] > 0.5 > by["noop"]["q_hat"]
    assert by["noop"]["queries"] == 30 and by["noop"]["sprt_queries"] < 30
    # interrupted after the first trial; the resumed run computes only the missing ones, from its cache
    first: list[dict] = []
    cfg = config()
    cfg.behaviours = ["noop"]
    bench.run(cfg, x, y, xt, yt, 10, set(), first.append, cache=bench.ModelCache(tmp_path / "b"))
    rest: list[dict] = []
    bench.run(config(), x, y, xt, yt, 10, {("lsb", "noop", 0)}, rest.append, cache=bench.ModelCache(tmp_path / "b"))
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}
    assert [strip(r) for r in first + rest] == [strip(r) for r in full]
    summary = {s["behaviour"]: s for s in bench.summarise(full)}
    assert summary["noop"]["fnr"] == 0.0 and summary["stale"]["trials"] == 1
    assert summary["noop"]["not_honored"] == 1.0
