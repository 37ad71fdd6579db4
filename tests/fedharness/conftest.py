import pytest
import torch

from fedharness.params import get_vector
from fedharness.tasks.image_classification import ImageClassificationTask


@pytest.fixture
def small_task(mnist):
    """A small MNIST task, its freshly initialised model, federated names and global vector."""
    x_train, y_train, x_test, y_test = mnist
    task = ImageClassificationTask(x_train[:400], y_train[:400], x_test[:100], y_test[:100])
    torch.manual_seed(0)
    model = task.build_model()
    names = task.federated_names(model)
    return task, model, names, get_vector(model, names)
