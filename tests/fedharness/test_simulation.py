import pytest

from fedharness.config import ExperimentConfig, FederationConfig
from fedharness.simulation import Simulation
from fedharness.tasks.image_classification import ImageClassificationTask
from labcore.errors import InputError


def test_more_clients_than_training_examples_are_refused_before_the_model_is_built(mnist, monkeypatch):
    x_train, y_train, x_test, y_test = mnist
    task = ImageClassificationTask(x_train[:9], y_train[:9], x_test[:10], y_test[:10])
    monkeypatch.setattr(task, "build_model", lambda: pytest.fail("the model was built"))
    cfg = ExperimentConfig(federation=FederationConfig(num_clients=10, clients_per_round=10, rounds=1))
    with pytest.raises(InputError, match=r"^10 clients need a training example each, but the task has 9; lower federation.num_clients"):
        Simulation(cfg, task)
