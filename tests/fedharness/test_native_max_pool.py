"""The compiled 2×2 max-pooling: torch's values and gradients, ties included; the eager form without a compiler."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedharness.engines.grouped import grouped_twin
from fedharness.engines.inprocess import InProcessEngine
from fedharness.local_training import LocalConfig
from fedharness.max_pool import MaxPool2d
from fedharness import native_max_pool
from fedharness.native_max_pool import NativeMaxPool2x2, native_kernels

needs_compiler = pytest.mark.skipif(native_kernels() is None, reason="no C compiler: the eager pooling runs")


def _tied_map(shape: tuple[int, ...]) -> torch.Tensor:
    """Random values with four-way, left-right and top-bottom ties and a -0.0/+0.0 pair."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    x[:, 0] = 0.5
    x[:, 1, :, 0::2] = x[:, 1, :, 1::2]
    x[:, 2, 0::2] = x[:, 2, 1::2]
    x[0, 3, 0, 0], x[0, 3, 0, 1], x[0, 3, 1] = -0.0, 0.0, -1.0
    return x


@needs_compiler
@pytest.mark.parametrize("shape", [(3, 4, 28, 28), (2, 5, 14, 14), (1, 4, 2, 2), (2, 4, 6, 34)])
def test_native_pooling_is_max_pool2d_bit_for_bit(shape):
    x = _tied_map(shape)
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, expected = NativeMaxPool2x2.apply(ours), F.max_pool2d(theirs, 2)
    assert native_max_pool.same_bits(out, expected)  # -0.0 and +0.0 told apart
    assert torch.equal(torch.autograd.grad(out, ours, grad)[0], torch.autograd.grad(expected, theirs, grad)[0])


@needs_compiler
def test_native_pooling_lets_a_nan_win_as_torch_does():
    """torch's scan: a later element wins if greater or NaN, so a window's last NaN is its maximum."""
    x = torch.randn(1, 2, 4, 4)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = x[0, 1, 2, 2] = float("nan")  # two NaNs in one window, one alone
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, expected = NativeMaxPool2x2.apply(ours), F.max_pool2d(theirs, 2)
    assert native_max_pool.same_bits(out, expected) and out.isnan().sum() == 2
    grad = torch.randn(1, 2, 2, 2)
    assert torch.equal(torch.autograd.grad(out, ours, grad)[0], torch.autograd.grad(expected, theirs, grad)[0])


@needs_compiler
def test_native_module_pools_only_what_its_kernel_takes():
    """2×2 windows of even contiguous float32 maps go native with or without a gradient; the rest, and
    maps under torch.func (the vmap path), as torch pools."""
    x = _tied_map((2, 4, 8, 8)).requires_grad_(True)
    assert type(MaxPool2d(2)(x).grad_fn).__name__ == "NativeMaxPool2x2Backward"
    for pool, data in [(MaxPool2d(2), torch.randn(2, 4, 7, 9, requires_grad=True)),
                       (MaxPool2d(3, 2, 1), x), (MaxPool2d(2), x.transpose(2, 3)), (MaxPool2d(2), x.double())]:
        out = pool(data)
        assert type(out.grad_fn).__name__ != "NativeMaxPool2x2Backward"
        assert torch.equal(out, F.max_pool2d(data, pool.kernel_size, pool.stride, pool.padding))
    per_map = lambda m: F.max_pool2d(m, 2).sum()
    assert torch.equal(torch.func.vmap(torch.func.grad(lambda m: MaxPool2d(2)(m).sum()))(x.detach()[:, None]),
                       torch.func.vmap(torch.func.grad(per_map))(x.detach()[:, None]))
    with torch.no_grad():
        assert torch.equal(MaxPool2d(2)(x), F.max_pool2d(x, 2)) and torch.equal(MaxPool2d(2)(x.double()), F.max_pool2d(x.double(), 2))


@needs_compiler
def test_a_second_order_through_the_compiled_pooling_raises_instead_of_dropping_the_term():
    x = _tied_map((1, 4, 4, 4)).requires_grad_(True)
    first = torch.autograd.grad(NativeMaxPool2x2.apply(x).square().sum(), x, create_graph=True)[0]
    with pytest.raises(RuntimeError):
        first.sum().backward()


def test_without_a_compiler_the_twin_pools_eagerly_with_the_same_local_models(small_task, use_compiler):
    task, model, names, g = small_task
    data = [task.client_data(np.arange(i * 25, i * 25 + 18 + i)) for i in range(4)]
    cfg = LocalConfig(epochs=1, lr=0.05, batch_size=8)
    native = InProcessEngine(model, names, task.per_sample_loss, vectorize="grouped", group_size=4).train(g, data, cfg, [1, 2, 3, 4])
    use_compiler(None)
    assert native_kernels() is None
    twin = grouped_twin(model)
    x = task.x_train[:4].requires_grad_(True)
    assert type(twin.body[2](twin.body[1](twin.body[0](x))).grad_fn).__name__ == "MaxPool2x2Backward"
    eager = InProcessEngine(model, names, task.per_sample_loss, vectorize="grouped", group_size=4).train(g, data, cfg, [1, 2, 3, 4])
    looped = InProcessEngine(model, names, task.per_sample_loss, vectorize=False).train(g, data, cfg, [1, 2, 3, 4])
    assert torch.equal(eager, looped) and torch.equal(native, looped)


@pytest.mark.parametrize("compiler", ["/bin/false", "/nonexistent/cc"])
def test_a_compiler_that_fails_or_does_not_run_leaves_the_eager_pooling(use_compiler, compiler):
    use_compiler(compiler)
    assert native_kernels() is None
    x = _tied_map((2, 4, 8, 8)).requires_grad_(True)
    assert type(MaxPool2d(2)(x).grad_fn).__name__ == "MaxPool2x2Backward"
    with torch.no_grad():
        assert torch.equal(MaxPool2d(2)(x), F.max_pool2d(x, 2))
