"""K clients' models as one model: stacked parameters, one autograd graph, per-client arithmetic.

``grouped_twin(model)`` copies a model and replaces each layer with its K-client twin. The twin
takes the parameters of K clients stacked on a leading dimension (``functional_call`` with tensors
shaped ``(K, *p.shape)``, K read from them) and a batch of B samples per client laid out
sample-major, client-minor: row ``b·K + k`` is client k's sample b. In that layout a convolution
over K clients is one grouped convolution on the free view ``(B, K·C, H, W)`` (``groups=K``), a
GroupNorm is one GroupNorm with K times the groups on the same view, a linear layer is one batched
matmul over clients, 2×2 max-pooling is :class:`MaxPool2x2` (torch's NCHW pooling kernel is slow on
CPU), and ReLU and flattening act per sample as they are. Client k's outputs depend on client k's
parameters and samples only, so the gradient of the sum of the clients' losses is, for each client,
its own gradient: K SGD steps in one pass, with the per-operation cost of eager PyTorch (dispatch,
autograd bookkeeping, the GIL that worker threads share) paid once for K clients.

Layers with parameters other than Conv2d (zero padding), GroupNorm and Linear, and layers not known
to act per sample (e.g. BatchNorm, dropout), have no twin: ``grouped_twin`` returns None and the
engine keeps the per-client loop.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fedharness.local_training import Batch, PerSampleLoss, num_samples

PER_SAMPLE = (nn.ReLU, nn.AvgPool2d, nn.Flatten, nn.Identity, nn.Tanh, nn.Sigmoid, nn.GELU)


class GroupedConv2d(nn.Module):
    """``conv`` for K clients: one convolution with ``groups = K·conv.groups`` on ``(B, K·C, H, W)``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.weight = nn.Parameter(conv.weight.detach().unsqueeze(0).clone())
        self.bias = nn.Parameter(conv.bias.detach().unsqueeze(0).clone()) if conv.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        bias = self.bias.reshape(-1) if self.bias is not None else None
        x = _grouped(x, k, self.weight.shape[2] * self.groups)
        return F.conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation, k * self.groups)


class GroupedGroupNorm(nn.Module):
    """``norm`` for K clients: one GroupNorm with K times the groups on ``(B, K·C, …)``."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.num_groups, self.eps, self.channels = norm.num_groups, norm.eps, norm.num_channels
        self.weight = nn.Parameter(norm.weight.detach().unsqueeze(0).clone()) if norm.affine else None
        self.bias = nn.Parameter(norm.bias.detach().unsqueeze(0).clone()) if norm.affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:  # per sample in either layout: K·C channels hold K clients' groups
            return F.group_norm(x, x.shape[1] // self.channels * self.num_groups, None, None, self.eps)
        k = self.weight.shape[0]
        bias = self.bias.reshape(-1) if self.bias is not None else None
        return F.group_norm(_grouped(x, k, self.channels), k * self.num_groups, self.weight.reshape(-1), bias, self.eps)


class GroupedLinear(nn.Module):
    """``linear`` for K clients: one batched matmul ``(K, B, in) @ (K, in, out)``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().unsqueeze(0).clone())
        self.bias = nn.Parameter(linear.bias.detach().unsqueeze(0).clone()) if linear.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        if k == 1:
            return F.linear(x, self.weight[0], None if self.bias is None else self.bias[0])
        per_client = x.reshape(-1, k, self.weight.shape[2]).transpose(0, 1)
        if self.bias is not None:
            out = torch.baddbmm(self.bias.unsqueeze(1), per_client, self.weight.transpose(1, 2))
        else:
            out = torch.bmm(per_client, self.weight.transpose(1, 2))
        return out.transpose(0, 1).reshape(-1, out.shape[-1])


class MaxPool2x2(torch.autograd.Function):
    """``max_pool2d(x, 2)`` of an even-sized NCHW map: the forward from its four strided 2×2 corners,
    the backward by torch's own kernel from the argmax indices the forward derives.

    Ties go to the window's first element in row-major order, as in torch's kernel, so values,
    indices and gradients are bit-identical to ``max_pool2d``'s (tested). torch's NCHW forward
    scans each window on its own (0.56 ms for a (10, 16, 28, 28) map on one thread; this 0.27 ms).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
        top, bottom = torch.maximum(a, b), torch.maximum(c, d)
        lower = bottom > top
        height, width = x.shape[-2:]
        rows, cols = (torch.arange(0, n, 2, device=x.device) for n in (height, width))
        corner = rows.view(-1, 1) * width + cols
        indices = corner + lower * width + torch.where(lower, d > c, b > a)
        ctx.save_for_backward(x, indices)
        return torch.maximum(top, bottom)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


class GroupedMaxPool2d(nn.Module):
    """``pool`` per sample and channel; 2×2 windows of stride 2 on even NCHW maps by :class:`MaxPool2x2`."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool
        window = (_pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding),
                  _pair(pool.dilation), pool.ceil_mode, pool.return_indices)
        self.two_by_two = window == ((2, 2), (2, 2), (0, 0), (1, 1), False, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_by_two and x.dim() == 4 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
            return MaxPool2x2.apply(x)
        return self.pool(x)


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _grouped(x: torch.Tensor, k: int, channels: int) -> torch.Tensor:
    """``x`` as ``(B, K·C, …)``: rows ``b·K + k`` of a per-sample ``(B·K, C, …)`` tensor are a free view."""
    if x.shape[1] == k * channels:
        return x
    return x.reshape(x.shape[0] // k, k * x.shape[1], *x.shape[2:])


TWINS = {nn.Conv2d: GroupedConv2d, nn.GroupNorm: GroupedGroupNorm, nn.Linear: GroupedLinear,
         nn.MaxPool2d: GroupedMaxPool2d}


def grouped_twin(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` whose layers run K clients at once (parameter names unchanged), or None
    when a layer has no grouped twin."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        kind = nn.MaxPool2d if isinstance(module, nn.MaxPool2d) else type(module)  # pooling subclasses pool alike
        if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
            return None
        if kind in TWINS:
            _replace(twin, name, TWINS[kind](module))
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
                  params: dict[str, torch.Tensor], data: Batch, tolerance: float = 1e-4) -> nn.Module | None:
    """``grouped_twin(model)`` if, on two of ``data``'s samples, two clients' per-sample losses through
    the twin equal the model's (relative ``tolerance``); else None. Guards models whose own forward
    code mixes samples or reshapes in a way the sample-major layout does not survive."""
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
        got = per_sample_loss(twin, {**frozen2, **stacked}, both).reshape(-1, 2)
    ok = got.shape == reference.shape and bool(((got - reference).norm() <= tolerance * reference.norm()))
    return twin if ok else None


def train_group(
    twin: nn.Module, per_sample_loss: PerSampleLoss, params: dict[str, torch.Tensor],
    frozen: dict[str, torch.Tensor], datasets: list[Batch], schedules: list[list[torch.Tensor]], lr: float,
) -> dict[str, torch.Tensor]:
    """K clients' local SGD from the same ``params`` in lock-step through ``twin``; returns the K local
    models stacked. Step t gathers client k's t-th batch into rows ``b·K + k``; a client whose
    schedule is shorter (or whose batch is smaller) is padded with weight-0 rows, so its gradient,
    Σ wᵢ·∇ℓᵢ / max(Σ wᵢ, 1), is its own batch mean as in :func:`fedharness.local_training.sgd_steps`."""
    k = len(datasets)
    sizes = [num_samples(d) for d in datasets]
    leaves = {n: p.detach().unsqueeze(0).repeat(k, *([1] * p.dim())).requires_grad_(True) for n, p in params.items()}
    if not any(sizes):
        return {n: p.detach() for n, p in leaves.items()}
    index, weight = _gather_plan(sizes, schedules, _device(params))
    data = {key: torch.cat([d[key] for d in datasets]) for key in datasets[0]}
    stacked_frozen = {n: v.unsqueeze(0).expand(k, *v.shape) for n, v in frozen.items()}
    state = {**stacked_frozen, **leaves}  # the leaves are updated in place: one mapping for every step
    tensors = list(leaves.values())
    for idx, w in zip(index, weight):
        batch = {key: v[idx.reshape(-1)] for key, v in data.items()}
        losses = per_sample_loss(twin, state, batch).reshape(w.shape)
        loss = ((losses * w).sum(0) / w.sum(0).clamp(min=1.0)).sum()
        grads = torch.autograd.grad(loss, tensors, allow_unused=True, materialize_grads=True)
        with torch.no_grad():
            for p, g in zip(tensors, grads):
                p.sub_(lr * g)
    return {n: p.detach() for n, p in leaves.items()}


def _gather_plan(
    sizes: list[int], schedules: list[list[torch.Tensor]], device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per step: (B, K) row indices into the clients' concatenated data and (B, K) weights (0 = padding)."""
    offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0).tolist()
    pad = next(o for o, s in zip(offsets, sizes) if s)  # any real row; its weight is 0
    steps = max(len(s) for s in schedules)
    index, weight = [], []
    for t in range(steps):
        width = max((len(s[t]) for s in schedules if t < len(s)), default=0)
        idx = torch.full((width, len(sizes)), pad, dtype=torch.long)
        w = torch.zeros(width, len(sizes))
        for c, (offset, sched) in enumerate(zip(offsets, schedules)):
            if t < len(sched):
                idx[: len(sched[t]), c] = sched[t] + offset
                w[: len(sched[t]), c] = 1.0
        index.append(idx.to(device))
        weight.append(w.to(device))
    return index, weight


def _device(params: dict[str, torch.Tensor]) -> torch.device:
    return next(iter(params.values())).device if params else torch.device("cpu")
