"""2×2 max-pooling at the speed of the pooled map: ``nn.MaxPool2d`` with torch's own values, indices
and gradients, from faster kernels.

torch's NCHW CPU pooling kernel scans each window on its own (0.56 ms for a (10, 16, 28, 28) map on
one thread). :class:`MaxPool2d` pools 2×2 windows through the compiled C loops of
:mod:`fedharness.native_max_pool` wherever a C compiler is found, in training and evaluation alike
(a per-client SGD step of SmallCNN at batch 10: 4.5 → 3.7 ms; the (160, 16, 28, 28) map of a
K = 16 grouped twin: 12 ms → about 2 ms forward and backward). Without one, or under ``torch.func``
(the vmap path), :class:`MaxPool2x2` takes the maximum of the map's four strided 2×2 corners while
a gradient is recorded (0.27 ms), and the channels-last kernel pools a channels-last copy while
none is. All are bit-identical to ``F.max_pool2d``, ties included (tested; the strided form on finite
maps: it does not follow torch's NaN rule), so a model that pools with :class:`MaxPool2d` trains and
predicts exactly as with ``nn.MaxPool2d``. The compiled backward is not differentiable again: a second
order through it (``create_graph=True``) raises instead of dropping the term.
"""

from __future__ import annotations

import torch
from torch import nn

from fedharness.native_max_pool import NativeMaxPool2x2, native_max_pool_2x2, takes_native


class MaxPool2x2(torch.autograd.Function):
    """``max_pool2d_with_indices(x, 2)`` of an even-sized NCHW map: the forward from its four strided
    2×2 corners, the backward by torch's own kernel from the argmax indices the forward derives.

    Ties go to the window's first element in row-major order, as in torch's kernel, so values,
    indices and gradients are torch's. Written for ``torch.func`` too (``setup_context``, a generated
    vmap rule), as the vmap client path trains the same models.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
        top, bottom = torch.maximum(a, b), torch.maximum(c, d)
        lower = bottom > top
        height, width = x.shape[-2:]
        rows, cols = (torch.arange(0, n, 2, device=x.device) for n in (height, width))
        corner = rows.view(-1, 1) * width + cols
        indices = corner + lower * width + torch.where(lower, d > c, b > a)
        return torch.maximum(top, bottom), indices

    @staticmethod
    def setup_context(  # type: ignore[override]
        ctx, inputs: tuple[torch.Tensor], output: tuple[torch.Tensor, torch.Tensor]
    ) -> None:
        ctx.save_for_backward(inputs[0], output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` of an even-sized NCHW map through :class:`MaxPool2x2`."""
    return MaxPool2x2.apply(x)[0]


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools 2×2, stride-2 windows of even maps through the compiled kernels of
    :mod:`fedharness.native_max_pool` (with or without a gradient, on every training path: the
    per-client loop, Flower's ClientApps and the grouped twins), else, under ``torch.func`` or
    without a compiler, by :class:`MaxPool2x2` while a gradient is recorded and through the
    channels-last kernel while none is."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        window = (self.kernel_size, self.stride, self.padding, self.dilation)
        self.two_by_two = all(_pair(v) == want for v, want in zip(window, ((2, 2), (2, 2), (0, 0), (1, 1)))) and not self.ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or self.return_indices:
            return super().forward(x)
        if self.two_by_two and takes_native(x):
            return NativeMaxPool2x2.apply(x) if torch.is_grad_enabled() else native_max_pool_2x2(x)
        if not torch.is_grad_enabled():
            return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()
        if self.two_by_two and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
            return max_pool_2x2(x)
        return super().forward(x)


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)
