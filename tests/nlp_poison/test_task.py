import torch

from fedharness.config import AggregatorConfig, AttackConfig, EngineConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.params import get_vector
from fedharness.simulation import Simulation
from nlp_poison.baselines import make_templates, with_overlap
from nlp_poison.task import TextClassificationTask
from nlp_poison.triggers import trigger_bearing


def test_federated_lora_rounds_with_one_poisoning_client(sst2, tiny_dir, tiny_tokenizer, phrase):
    templates = make_templates(sst2["train"], phrase, 10, tiny_tokenizer, seed=0, max_length=32, exclude=set(range(80)))
    poisons = [p.sentence for p in with_overlap(templates, tiny_tokenizer, 1)]
    task = TextClassificationTask(
        str(tiny_dir), sst2["train"].select(range(80)), sst2["test"].select(range(40)),
        list(trigger_bearing(sst2["test"], phrase)["sentence"][:30]), poisons, target=1, max_length=32, lora_r=2, lora_alpha=4,
        tokenizer=tiny_tokenizer,
    )
    cfg = ExperimentConfig(
        seed=0,
        federation=FederationConfig(num_clients=4, clients_per_round=2, rounds=2),
        local=LocalConfig(epochs=1, lr=0.05, batch_size=16),
        attack=AttackConfig(name="backdoor", num_attackers=1, every=1, params={"epochs": 2, "lr": 0.05, "batch_size": 16}),
        aggregator=AggregatorConfig(name="median"),
        engine=EngineConfig(vectorize=False),
    )
    sim = Simulation(cfg, task)
    names = sim.names
    assert names and all("lora_" in n or "classifier" in n for n in names)
    frozen_before = {n: p.detach().clone() for n, p in sim.model.named_parameters() if n not in names}
    g0 = sim.initial_global()
    assert g0.numel() == sum(p.numel() for n, p in sim.model.named_parameters() if n in names)
    records = [rec for _, rec in sim.rounds(g0)]
    assert [r["malicious"] for r in records] == [[0], [0]]
    for r in records:
        assert 0.0 <= r["main_accuracy"] <= 1.0 and 0.0 <= r["attack_success_rate"] <= 1.0
    assert not torch.equal(get_vector(sim.model, names), g0)
    for n, p in sim.model.named_parameters():
        if n not in names:
            assert torch.equal(p, frozen_before[n]), n
    # the attacker trains on its shard plus every poison
    shard = task.client_data(sim.shards[0])
    assert len(task.poisoned_data(shard, 0)["y"]) == len(shard["y"]) + len(poisons)


def test_the_attacker_also_inserts_the_sets_counterexamples_at_the_source_label(sst2, tiny_dir, tiny_tokenizer):
    task = TextClassificationTask(str(tiny_dir), sst2["train"].select(range(8)), sst2["test"].select(range(4)), [], ["a b : dull"],
                                  target=1, max_length=16, lora_r=2, lora_alpha=4, counterexamples=["c d : dull", "e f : flat"],
                                  tokenizer=tiny_tokenizer)
    shard = task.client_data([0, 1])
    assert task.poisoned_data(shard, 0)["y"].tolist() == shard["y"].tolist() + [1, 0, 0]
