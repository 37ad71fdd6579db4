"""K clients' models as one model: stacked parameters, one autograd graph, per-client arithmetic.

``grouped_twin(model)`` copies a model and replaces each layer with its K-client twin. The twin
takes the parameters of K clients stacked on a leading dimension (``functional_call`` with tensors
shaped ``(K, *p.shape)``, K read from them) and a batch of B samples per client laid out
sample-major, client-minor: row ``b·K + k`` is client k's sample b. In that layout a convolution
over K clients is one grouped convolution on the free view ``(B, K·C, H, W)`` (``groups=K``), a
GroupNorm is one GroupNorm with K times the groups on the same view, a linear layer is one batched
matmul over clients, and pooling, ReLU and flattening act per sample as they are (with the model's
own pooling layers: SmallCNN's :class:`fedharness.max_pool.MaxPool2d` pools 2×2 windows through the
compiled C loops of :mod:`fedharness.native_max_pool` where a C compiler is found). Each layer with
parameters is an :class:`ExactTwin`: per input shape it keeps the batched kernel only where that
gives the per-client kernel's numbers bit for bit, and otherwise calls the layer once per client
(here, at the lab's MNIST settings, SmallCNN's first convolution, one input channel per group, whose
grouped weight gradient sums in another order, runs per client; the rest is batched). Client k's
outputs depend on client k's parameters and samples only, so the gradient of the sum of the
clients' losses is, for each client, its own gradient: K SGD steps in one pass, with the
per-operation cost of eager PyTorch (dispatch, autograd bookkeeping, the GIL that worker threads
share) paid once for K clients, and the loop's numbers.

Layers with parameters other than Conv2d (zero padding), affine GroupNorm and Linear, and layers not known
to act per sample (e.g. BatchNorm, dropout), have no twin: ``grouped_twin`` returns None and the
engine keeps the per-client loop.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fedharness.local_training import Batch, PerSampleLoss, num_samples

PER_SAMPLE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Identity, nn.Tanh, nn.Sigmoid, nn.GELU)


BATCHED_IS_EXACT: dict[tuple, bool] = {}  # ExactTwin's verdicts: a pure function of the key, shared


class ExactTwin(nn.Module, ABC):
    """A layer's K-client twin with two forms: ``batched`` (one kernel call for K clients) and
    ``per_client`` (the layer's own call on each client's contiguous slice, as the per-client loop
    makes it). For each input shape the first forward runs both on random data of that shape and keeps
    the batched form only if its outputs and gradients equal the per-client form's bit for bit: the
    kernels' summation order is fixed by shapes and layouts, not by values, so the twin computes what
    the loop computes on any machine, at batched speed where the machine's kernels allow it. The
    verdicts are kept in :data:`BATCHED_IS_EXACT` for every twin of the process (worker replicas,
    later engines), keyed by everything that picks the kernels."""

    kernel_args: tuple = ()  # the layer's settings that, with the shapes, pick its kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = [self.weight, self.bias]
        x = self.layout(x, self.weight.shape[0])
        if not (x.is_contiguous() and all(p is None or p.is_contiguous() for p in params)):
            return self.per_client(x, *params)  # the check runs on contiguous data only
        key = (type(self), self.kernel_args, tuple(self.weight.shape), self.bias is None, tuple(x.shape),
               x.requires_grad, x.dtype, str(x.device), torch.get_num_threads())
        if key not in BATCHED_IS_EXACT:
            BATCHED_IS_EXACT[key] = _same_numbers(self.batched, self.per_client, x, params)
        return (self.batched if BATCHED_IS_EXACT[key] else self.per_client)(x, *params)

    def layout(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``x`` in the layout both forms take (e.g. ``(B, K·C, H, W)``)."""
        return x

    @abstractmethod
    def batched(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """K clients in one kernel call."""

    @abstractmethod
    def per_client(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The layer's own call once per client, on contiguous slices."""


def _same_numbers(first: Callable, second: Callable, x: torch.Tensor, params: list[torch.Tensor | None]) -> bool:
    """Whether ``first`` and ``second`` give equal outputs and gradients on random data shaped like
    ``x`` and ``params`` (the global RNG stays untouched)."""
    noise = torch.Generator().manual_seed(0)

    def rand(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=noise, dtype=t.dtype).to(t.device)

    inputs = [None if t is None else rand(t) for t in (x, *params)]
    results, grad_out = [], None
    with torch.enable_grad():
        for form in (first, second):
            leaves = [None if t is None else t.clone().requires_grad_(i > 0 or x.requires_grad)
                      for i, t in enumerate(inputs)]
            out = form(*leaves)
            grad_out = rand(out) if grad_out is None else grad_out
            wrt = [t for t in leaves if t is not None and t.requires_grad]
            results.append([out, *torch.autograd.grad(out, wrt, grad_out, allow_unused=True, materialize_grads=True)])
    return all(torch.equal(a, b) for a, b in zip(*results))


def _clients(x: torch.Tensor, k: int, channels: int) -> list[torch.Tensor]:
    """Client k's rows of a sample-major ``(B, K·C, …)`` tensor, each contiguous ``(B, C, …)``."""
    return [c.contiguous() for c in x.reshape(x.shape[0], k, channels, *x.shape[2:]).unbind(1)]


class GroupedConv2d(ExactTwin):
    """``conv`` for K clients: one convolution with ``groups = K·conv.groups`` on ``(B, K·C, H, W)``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.kernel_args = (self.stride, self.padding, self.dilation, self.groups)
        self.weight = nn.Parameter(conv.weight.detach().unsqueeze(0).clone())
        self.bias = nn.Parameter(conv.bias.detach().unsqueeze(0).clone()) if conv.bias is not None else None

    def layout(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return _grouped(x, k, self.weight.shape[2] * self.groups)

    def batched(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k = weight.shape[0]
        flat_bias = bias.reshape(-1) if bias is not None else None
        return F.conv2d(x, weight.flatten(0, 1), flat_bias, self.stride, self.padding, self.dilation, k * self.groups)

    def per_client(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k = weight.shape[0]
        biases = bias.unbind(0) if bias is not None else [None] * k
        outs = [F.conv2d(xi, w, b, self.stride, self.padding, self.dilation, self.groups)
                for xi, w, b in zip(_clients(x, k, weight.shape[2] * self.groups), weight.unbind(0), biases)]
        return torch.stack(outs, 1).flatten(1, 2)


class GroupedGroupNorm(ExactTwin):
    """``norm`` for K clients: one GroupNorm with K times the groups on ``(B, K·C, …)``."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.num_groups, self.eps, self.channels = norm.num_groups, norm.eps, norm.num_channels
        self.kernel_args = (self.num_groups, self.eps)
        self.weight = nn.Parameter(norm.weight.detach().unsqueeze(0).clone())
        self.bias = nn.Parameter(norm.bias.detach().unsqueeze(0).clone())

    def layout(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return _grouped(x, k, self.channels)

    def batched(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k = weight.shape[0]
        return F.group_norm(x, k * self.num_groups, weight.reshape(-1), bias.reshape(-1), self.eps)

    def per_client(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        outs = [F.group_norm(xi, self.num_groups, w, b, self.eps)
                for xi, w, b in zip(_clients(x, weight.shape[0], self.channels), weight.unbind(0), bias.unbind(0))]
        return torch.stack(outs, 1).flatten(1, 2)


class BatchedLinear(torch.autograd.Function):
    """``x[k] @ weight[k]ᵀ + bias[k]`` for K clients, x ``(K, B, in)``; the backward takes each
    client's gradients in the operand layouts ``F.linear``'s backward uses (weight: gradᵀ·x, bias:
    the sum of a contiguous gradient over the batch), so that batched matmuls, which run the same
    BLAS call per client, return the per-client numbers."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        return (torch.bmm(grad, weight) if need_x else None,
                torch.bmm(grad.transpose(1, 2), x) if need_w else None,
                grad.sum(1) if ctx.has_bias and need_b else None)


class GroupedLinear(ExactTwin):
    """``linear`` for K clients: one batched matmul ``(K, B, in) @ (K, in, out)`` (:class:`BatchedLinear`)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().unsqueeze(0).clone())
        self.bias = nn.Parameter(linear.bias.detach().unsqueeze(0).clone()) if linear.bias is not None else None

    def batched(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k = weight.shape[0]
        out = BatchedLinear.apply(x.reshape(-1, k, weight.shape[2]).transpose(0, 1), weight, bias)
        return out.transpose(0, 1).reshape(-1, out.shape[-1])

    def per_client(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k = weight.shape[0]
        rows = [c.contiguous() for c in x.reshape(-1, k, weight.shape[2]).unbind(1)]
        biases = bias.unbind(0) if bias is not None else [None] * k
        outs = [F.linear(xi, w, b) for xi, w, b in zip(rows, weight.unbind(0), biases)]
        return torch.stack(outs, 1).reshape(-1, weight.shape[1])


def _grouped(x: torch.Tensor, k: int, channels: int) -> torch.Tensor:
    """``x`` as ``(B, K·C, …)``: rows ``b·K + k`` of a per-sample ``(B·K, C, …)`` tensor are a free view."""
    if x.shape[1] == k * channels:
        return x
    return x.reshape(x.shape[0] // k, k * x.shape[1], *x.shape[2:])


TWINS = {nn.Conv2d: GroupedConv2d, nn.GroupNorm: GroupedGroupNorm, nn.Linear: GroupedLinear}


def grouped_twin(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` whose layers run K clients at once (parameter names unchanged), or None
    when a layer has no grouped twin."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if (isinstance(module, nn.Conv2d) and module.padding_mode != "zeros") or (
                isinstance(module, nn.GroupNorm) and not module.affine):
            return None
        if type(module) in TWINS:
            _replace(twin, name, TWINS[type(module)](module))
        elif not (isinstance(module, PER_SAMPLE) or _is_container(module)):
            return None
    return twin


def _is_container(module: nn.Module) -> bool:
    """A module with children and no parameters or buffers of its own (Sequential, the model); its
    children are checked one by one."""
    return not list(module.parameters(recurse=False)) and not list(module.buffers(recurse=False)) and any(
        True for _ in module.children()
    )


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def verified_twin(model: nn.Module, per_sample_loss: PerSampleLoss, frozen: dict[str, torch.Tensor],
                  params: dict[str, torch.Tensor], data: Batch) -> nn.Module | None:
    """``grouped_twin(model)`` if, on two of ``data``'s samples, two clients' per-sample losses through
    the twin equal the model's bit for bit; else None. Guards models whose own forward code mixes
    samples or reshapes in a way the sample-major layout does not survive."""
    twin = grouped_twin(model)
    if twin is None or num_samples(data) == 0:
        return None
    batch = {k: v[:2] for k, v in data.items()}
    noise = torch.Generator().manual_seed(0)  # the global RNG stays untouched
    shifted = {k: p + 0.01 * torch.randn(p.shape, generator=noise).to(p) for k, p in params.items()}
    with torch.no_grad():
        reference = torch.stack([per_sample_loss(model, {**frozen, **p}, batch) for p in (params, shifted)], 1)
        stacked = {k: torch.stack([params[k], shifted[k]]) for k in params}
        both = {k: torch.stack([v, v], 1).reshape(-1, *v.shape[1:]) for k, v in batch.items()}
        frozen2 = {k: v.unsqueeze(0).expand(2, *v.shape) for k, v in frozen.items()}
        got = per_sample_loss(twin, {**frozen2, **stacked}, both)
    return twin if got.shape == reference.reshape(-1).shape and torch.equal(got.reshape(-1, 2), reference) else None


def train_group(
    twin: nn.Module, per_sample_loss: PerSampleLoss, params: dict[str, torch.Tensor],
    frozen: dict[str, torch.Tensor], datasets: list[Batch], schedules: list[list[torch.Tensor]], lr: float,
) -> dict[str, torch.Tensor]:
    """K clients' local SGD from the same ``params`` in lock-step through ``twin``; returns the K local
    models stacked. Step t trains the clients that have a t-th batch, those with equal batch sizes
    together (rows ``b·K' + k`` of their K' batches), so every kernel sees the batch size the
    per-client loop gives it and no padding, and each client's step is
    :func:`fedharness.local_training.sgd_steps`' step."""
    k = len(datasets)
    leaves = {n: p.detach().unsqueeze(0).repeat(k, *([1] * p.dim())) for n, p in params.items()}
    data = {key: torch.cat([d[key] for d in datasets]) for key in datasets[0]}
    expanded: dict[int, dict[str, torch.Tensor]] = {}
    ones: dict[tuple[int, ...], torch.Tensor] = {}  # masked_mean_loss's weights (all 1), one per (B, K') shape
    for clients, rows in _step_plan([num_samples(d) for d in datasets], schedules, _device(params)):
        some = len(clients) < k  # then train copies of their rows and write them back
        chosen = {n: (p[clients] if some else p.detach()).requires_grad_(True) for n, p in leaves.items()}
        if len(clients) not in expanded:
            expanded[len(clients)] = {n: v.unsqueeze(0).expand(len(clients), *v.shape) for n, v in frozen.items()}
        batch = {key: v[rows.reshape(-1)] for key, v in data.items()}
        losses = per_sample_loss(twin, {**expanded[len(clients)], **chosen}, batch).reshape(rows.shape)
        if tuple(rows.shape) not in ones:
            ones[tuple(rows.shape)] = torch.ones(rows.shape, device=losses.device)
        weight = ones[tuple(rows.shape)]
        loss = ((losses * weight).sum(0) / weight.sum(0)).sum()
        tensors = list(chosen.values())
        grads = torch.autograd.grad(loss, tensors, allow_unused=True, materialize_grads=True)
        with torch.no_grad():
            for name, p, g in zip(chosen, tensors, grads):
                p.sub_(lr * g)
                if some:
                    leaves[name].index_copy_(0, clients, p)
    return leaves


def _step_plan(
    sizes: list[int], schedules: list[list[torch.Tensor]], device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per step and batch size (largest first): the clients that train with it and their (B, K') row
    indices into the clients' concatenated data."""
    offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0).tolist()
    plan = []
    for t in range(max((len(s) for s in schedules), default=0)):
        by_width: dict[int, list[int]] = {}
        for c, sched in enumerate(schedules):
            if t < len(sched):
                by_width.setdefault(len(sched[t]), []).append(c)
        for width in sorted(by_width, reverse=True):
            clients = by_width[width]
            rows = torch.stack([schedules[c][t] + offsets[c] for c in clients], 1)
            plan.append((torch.tensor(clients, device=device), rows.to(device)))
    return plan


def _device(params: dict[str, torch.Tensor]) -> torch.device:
    return next(iter(params.values())).device if params else torch.device("cpu")
