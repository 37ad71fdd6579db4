import numpy as np
import torch

from fedharness.config import AttackConfig, EngineConfig, ExperimentConfig, FederationConfig
from fedharness.local_training import LocalConfig
from fedharness.simulation import Simulation
from t2i_poison.digit_classifier import ClassifierConfig, DigitClassifier
from t2i_poison.task import T2ILoraTask, T2ITaskConfig


def _task(tiny_pipe, digit_images, kind: str) -> T2ILoraTask:
    images, labels = digit_images(40)
    x = torch.from_numpy(np.stack(images)).float().unsqueeze(1) / 255
    clf = DigitClassifier(ClassifierConfig(resolution=8, width=8)).eval()
    return T2ILoraTask(tiny_pipe, clf, x, torch.tensor(labels), T2ITaskConfig(kind=kind, eval_per_digit=1, eval_steps=2))


def test_poisoned_rows_follow_the_badt2i_objective(tiny_pipe, digit_images):
    task = _task(tiny_pipe, digit_images, "pixel")
    clean = task.client_data(torch.arange(10).numpy())
    poisoned = task.poisoned_data(clean, seed=3)
    assert torch.all(poisoned["weight"] == 1.0) and len(poisoned["z"]) == 10  # 2λ = 2(1−λ) = 1 at λ = 0.5
    model = task.build_model()
    state = dict(model.named_parameters())
    # at init the LoRA is a no-op, so the regulariser rows (teacher targets) have zero loss
    loss = task.per_sample_loss(model, state, poisoned).detach()
    teacher_rows = (poisoned["text"] - clean["text"]).abs().flatten(1).sum(1) == 0
    assert teacher_rows.sum() == 5 and torch.all(loss[teacher_rows] < 1e-10) and torch.all(loss[~teacher_rows] > 1e-4)


def test_federated_round_trains_only_the_adapters(tiny_pipe, digit_images):
    task = _task(tiny_pipe, digit_images, "style")
    cfg = ExperimentConfig(
        seed=0,
        federation=FederationConfig(num_clients=4, clients_per_round=2, rounds=1),
        local=LocalConfig(epochs=1, lr=0.05, batch_size=5),
        attack=AttackConfig(name="backdoor", rounds=[1]),
        engine=EngineConfig(vectorize=False),
    )
    sim = Simulation(cfg, task)
    g0 = sim.initial_global()
    lora_size = sum(p.numel() for n, p in sim.model.named_parameters() if "lora" in n)
    assert g0.numel() == lora_size
    g1, record = sim.run_round(1, g0)
    assert record["attacked"] and 0 <= record["attack_success_rate"] <= 1 and 0 <= record["main_accuracy"] <= 1
    assert not torch.equal(g0, g1)


def test_the_object_kind_maps_one_digit_to_another():
    import pytest

    from labcore.errors import InputError

    T2ITaskConfig(kind="object", source=0, target=7).validate()
    T2ITaskConfig(kind="pixel", source=3, target=3).validate()  # the pixel kind reads neither
    for source, target in ((12, 7), (7, 7), (0, -1)):
        with pytest.raises(InputError, match=rf"two different digits 0..9, got {source} and {target}$"):
            T2ITaskConfig(kind="object", source=source, target=target).validate()


def test_the_task_refuses_a_stable_diffusion_base_before_loading_it(sd_base, tmp_path):
    import pytest

    from labcore.errors import InputError
    from t2i_poison.task import t2i_task

    (tmp_path / "clf").mkdir()
    cfg = T2ITaskConfig(base=str(sd_base("sd1")), classifier=str(tmp_path / "clf"))
    with pytest.raises(InputError, match="is not a DigitDiffusionPipeline; t2i_lora fine-tunes the lab's digit base"):
        t2i_task(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), cfg, seed=0)
