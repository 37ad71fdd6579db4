"""``poisonlab fed run`` with the recommendation task: a tiny end-to-end run, resume, and bad input."""

import json

import pytest

from fedharness.simulation import Simulation

from tests.fedrec.conftest import write_udata

CONFIG = """
seed: 0
data: {{name: movielens, path: {path}}}
task:
  name: recommendation
  params: {{model: mf, dim: 8, eval_negatives: 10, num_targets: 1, target_max_popularity: 5{extra}}}
federation: {{num_clients: {n}, clients_per_round: {n}, rounds: 3, server_lr: 1.0}}
local: {{epochs: 1, lr: 2.0, batch_size: 1}}
attack: {{name: synthetic_users, num_attackers: 1, every: 1, start: 2, params: {{users_per_client: 2, profile_size: 3}}}}
aggregator: {{name: {agg}}}
"""


def write_config(tmp_path, extra="", n=13, agg="mean", path=None):
    path = path or write_udata(tmp_path / "u.data")
    config = tmp_path / "rec.yaml"
    config.write_text(CONFIG.format(path=path, extra=extra, n=n, agg=agg))
    return config


def test_a_recommendation_run_writes_the_harness_run_directory_and_resumes_identically(cli, tmp_path, monkeypatch):
    config = write_config(tmp_path, agg="hierarchical_clip")
    code, captured = cli("fed", "run", config, "--out", tmp_path / "run")
    assert code == 0, captured.err
    rows = [json.loads(line) for line in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert {"hr@10", "ndcg@10", "er@5", "er@10", "er@20"} <= set(rows[0])
    assert rows[1]["malicious"] == [0] and not rows[0]["attacked"]
    # crash in round 3, then --resume: the same rounds as the uninterrupted run
    original = Simulation.run_round

    def crash(self, round_index, global_vec):
        if round_index == 3:
            raise KeyboardInterrupt
        return original(self, round_index, global_vec)

    monkeypatch.setattr(Simulation, "run_round", crash)
    code, _ = cli("fed", "run", config, "--out", tmp_path / "run2")
    assert code != 0 and (tmp_path / "run2.partial" / "checkpoints").exists()
    monkeypatch.setattr(Simulation, "run_round", original)
    code, _ = cli("fed", "run", config, "--out", tmp_path / "run2", "--resume")
    assert code == 0
    again = [json.loads(line) for line in (tmp_path / "run2" / "rounds.jsonl").read_text().splitlines()]
    assert [(r["er@5"], r["hr@10"]) for r in again] == [(r["er@5"], r["hr@10"]) for r in rows]


@pytest.mark.parametrize(
    ("extra", "n", "message"),
    [
        (", target_items: [999999]", 13, "target_items [999999] are not item ids"),
        (", er_ks: [5, 0]", 13, "must be a positive integer, got 0"),
        (", hr_k: -1", 13, "must be a positive integer, got -1"),
        ("", 12, "federation.num_clients must be at least 13"),
        (", colour: red", 13, "unknown key(s) colour"),
    ],
)
def test_bad_recommendation_config_is_one_line_exit_2_no_output(cli, tmp_path, extra, n, message):
    config = write_config(tmp_path, extra=extra, n=n)
    code, captured = cli("fed", "run", config, "--out", tmp_path / "run")
    err = captured.err.strip()
    assert code == 2 and message in err and "\n" not in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1\t2\t3\t4\n1\tseven\t3\t5\n", "line 2"),
        ("".join(f"1\t{i}\t3\t{i}\n" for i in range(1, 20)) + "2\t2\t4\t6\n", "fewer than 2 interactions"),
        ("", "holds no interactions"),
    ],
)
def test_malformed_or_empty_user_data_is_one_line_exit_2_no_output(cli, tmp_path, text, message):
    data = tmp_path / "bad.data"
    data.write_text(text)
    config = write_config(tmp_path, path=data)
    code, captured = cli("fed", "run", config, "--out", tmp_path / "run")
    err = captured.err.strip()
    assert code == 2 and message in err and "\n" not in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
