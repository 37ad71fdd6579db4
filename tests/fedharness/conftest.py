import pytest
import torch

from fedharness import native_max_pool
from fedharness.native_max_pool import native_kernels
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


@pytest.fixture
def use_compiler(monkeypatch):
    """``use_compiler(path)``: the compiled pooling is built anew with the C compiler at ``path`` (None: none
    found); after the test it is built anew with the machine's own."""
    def use(path: str | None) -> None:
        native_kernels.cache_clear()
        monkeypatch.setattr(native_max_pool.shutil, "which", lambda name: path)

    yield use
    native_kernels.cache_clear()
