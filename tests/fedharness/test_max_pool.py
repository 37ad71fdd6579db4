"""2×2 max-pooling from compiled loops, strided views and channels-last copies: torch's numbers, faster."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedharness.max_pool import MaxPool2d, max_pool_2x2
from fedharness.native_max_pool import native_kernels


def test_strided_max_pooling_is_max_pool2d_bit_for_bit():
    """Values and gradients, with ties (constant rows, as MNIST's background gives after GroupNorm)."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, 6)
    x[:, :, :4] = 0.25
    x[0, 0, 4:6, 0:2] = 1.0  # a window of four equal maxima
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    grad = torch.randn(3, 5, 4, 3)
    ours = max_pool_2x2(a)
    theirs = F.max_pool2d(b, 2)
    assert torch.equal(ours, theirs)
    assert torch.equal(torch.autograd.grad(ours, a, grad)[0], torch.autograd.grad(theirs, b, grad)[0])


def test_odd_maps_and_other_windows_pool_as_torch_does():
    x = torch.randn(2, 3, 7, 9, requires_grad=True)
    for pool in (MaxPool2d(2), MaxPool2d(3, 2, padding=1), MaxPool2d(2, ceil_mode=True)):
        reference = nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding, ceil_mode=pool.ceil_mode)
        assert torch.equal(pool(x), reference(x))


@pytest.mark.parametrize("compiler", [True, False])
def test_small_cnn_trains_and_predicts_as_with_torchs_pooling(small_task, use_compiler, compiler):
    """SmallCNN's own pooling (the compiled kernels; without a compiler the strided path under autograd
    and channels-last without): the same losses, gradients and predictions as ``nn.MaxPool2d`` on MNIST
    images, whose flat backgrounds give ties in every pooling window."""
    task, model, _, _ = small_task
    if not compiler:
        use_compiler(None)
    reference = copy.deepcopy(model)
    for name, module in list(reference.body.named_children()):
        if isinstance(module, MaxPool2d):
            reference.body[int(name)] = nn.MaxPool2d(2)
    x, y = task.x_train[:20], task.y_train[:20]
    native = compiler and native_kernels() is not None
    expected = "NativeMaxPool2x2Backward" if native else "MaxPool2x2Backward"
    assert type(model.body[2](model.body[1](model.body[0](x))).grad_fn).__name__ == expected
    losses = [F.cross_entropy(m(x), y) for m in (model, reference)]
    assert torch.equal(losses[0], losses[1])
    grads = [torch.autograd.grad(loss, list(m.parameters())) for loss, m in zip(losses, (model, reference))]
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    with torch.no_grad():
        assert torch.equal(model(task.x_test), reference(task.x_test))


def test_evaluation_pools_without_a_gradient_with_the_same_predictions(small_task):
    """The task's prediction (no gradient: the compiled pooling, channels-last without a compiler) equals the model's output under
    autograd, also when two threads share the batches."""
    task, model, _, _ = small_task
    with torch.enable_grad():
        reference = model(task.x_test).argmax(1)
    task.eval_batch = 30
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threaded = task.predict(model, task.x_test)
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(threaded, reference)
    assert torch.equal(task.predict(model, task.x_test), reference)
