"""2×2 max-pooling as one compiled C loop each way: torch's values, argmax and gradients at memory speed.

On one thread, the eager strided form (:class:`fedharness.max_pool.MaxPool2x2`) spends 12 ms per
forward and backward of a grouped twin's (160, 16, 28, 28) map: about ten elementwise kernels on
stride-2 views that build int64 indices, then torch's scatter backward into a zero-filled map. One C
loop over the windows writes the maximum and a one-byte corner code (1.3 ms; 0.8 ms without torch's
NaN rule below), another writes each gradient to its coded corner and zero to the other three
(0.9 ms); both vectorise (``-O3``, for this machine's vector width where the compiler knows it).
Maxima and comparisons are exact in any order and ties go to the window's first element in
row-major order and a NaN wins (the window's last one), as in torch's kernel, so values and
gradients equal ``F.max_pool2d``'s bit for bit (checked on first load and in the tests). The source
is compiled once per process with the system C compiler (0.2 s; with the check about 1 s on a loaded
machine) and called through ctypes, which releases the GIL, so worker threads pool in parallel. Where no compiler is found or the check fails, :func:`native_kernels` returns None and the
callers keep the eager form.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch._C._functorch import is_functorch_wrapped_tensor

COMPILE_TIMEOUT_S = 60
FLAGS = (("-O3", "-march=native"), ("-O3",))
"""Compiler flags, first that builds wins: this machine's vector width (compiled where it runs), else plain -O3."""

SOURCE = r"""
#include <stdint.h>

/* rows = N*C*H/2 pooled rows of w2 = W/2 windows; window j of row r reads x rows 2r and 2r+1. */
void pool_forward(const float *restrict x, float *restrict out, uint8_t *restrict code, int64_t rows, int64_t w2) {
    for (int64_t r = 0; r < rows; r++) {
        const float *top_row = x + r * 4 * w2, *bottom_row = top_row + 2 * w2;
        float *o = out + r * w2;
        uint8_t *k = code + r * w2;
        for (int64_t j = 0; j < w2; j++) {
            float a = top_row[2 * j], b = top_row[2 * j + 1], c = bottom_row[2 * j], d = bottom_row[2 * j + 1];
            int right_top = b > a, right_bottom = d > c;
            float top = right_top ? b : a, bottom = right_bottom ? d : c;
            int lower = bottom > top;
            float v = lower ? bottom : top;
            int q = right_top + lower * (2 + right_bottom - right_top);
            /* torch's scan lets a NaN win, the window's last one; selects, so the loop still vectorises */
            v = a != a ? a : v; q = a != a ? 0 : q;
            v = b != b ? b : v; q = b != b ? 1 : q;
            v = c != c ? c : v; q = c != c ? 2 : q;
            v = d != d ? d : v; q = d != d ? 3 : q;
            o[j] = v;
            k[j] = (uint8_t)q;
        }
    }
}

/* float bits masked by the code: the gradient at the argmax corner, +0.0 at the other three. */
void pool_backward(const uint32_t *restrict grad, const uint8_t *restrict code, uint32_t *restrict grad_in,
                   int64_t rows, int64_t w2) {
    for (int64_t r = 0; r < rows; r++) {
        const uint32_t *g = grad + r * w2;
        const uint8_t *k = code + r * w2;
        uint32_t *top_row = grad_in + r * 4 * w2, *bottom_row = top_row + 2 * w2;
        for (int64_t j = 0; j < w2; j++) {
            uint32_t v = g[j], q = k[j];
            top_row[2 * j] = v & -(uint32_t)(q == 0);
            top_row[2 * j + 1] = v & -(uint32_t)(q == 1);
            bottom_row[2 * j] = v & -(uint32_t)(q == 2);
            bottom_row[2 * j + 1] = v & -(uint32_t)(q == 3);
        }
    }
}
"""


@functools.cache
def native_kernels() -> ctypes.CDLL | None:
    """The compiled library, or None without a C compiler or when its pooling differs from torch's."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source, library = Path(tmp) / "max_pool_2x2.c", Path(tmp) / "max_pool_2x2.so"
            source.write_text(SOURCE)
            built = any(subprocess.run([compiler, *flags, "-shared", "-fPIC", "-o", str(library), str(source)],
                                       capture_output=True, timeout=COMPILE_TIMEOUT_S).returncode == 0 for flags in FLAGS)
            lib = ctypes.CDLL(str(library)) if built else None  # mapped: the file may go
    except (OSError, subprocess.TimeoutExpired):  # no writable temporary folder, a compiler that does not run or
        return None                              # hangs, a temporary folder mounted noexec
    if lib is None:
        return None
    args = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    lib.pool_forward.argtypes = lib.pool_backward.argtypes = args
    return lib if _pools_as_torch(lib) else None


def _pools_as_torch(lib: ctypes.CDLL) -> bool:
    """Values and gradients equal ``F.max_pool2d``'s on random maps with tied windows and NaNs."""
    noise = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 10, generator=noise)
    x[:, :, :4] = 0.25  # four-way ties
    x[:, 1, 4:, ::2] = x[:, 1, 4:, 1::2]  # left-right ties
    x[:, 2, 4::2] = x[:, 2, 5::2]  # top-bottom ties
    x[0, 0, 4:8:3, 0:4:3] = float("nan")  # a NaN in each corner of four windows
    x[0, 0, 0, :2] = x[0, 0, 1, 1] = float("nan")  # three in one window
    grad = torch.randn(2, 3, 4, 5, generator=noise)
    out, code = _forward(lib, x)
    with torch.inference_mode(False), torch.enable_grad():  # the first call may come from an evaluation
        ref = x.clone().requires_grad_(True)
        expected = F.max_pool2d(ref, 2)
        reference_grad = torch.autograd.grad(expected, ref, grad)[0]
    return same_bits(out, expected) and torch.equal(_backward(lib, grad, code), reference_grad)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal float32 tensors bit for bit, NaN included (``torch.equal`` calls NaN unequal to itself)."""
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


def _forward(lib: ctypes.CDLL, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled map and each window's corner code (0–3, row-major) of a contiguous float32 NCHW ``x``."""
    n, c, h, w = x.shape
    out = x.new_empty(n, c, h // 2, w // 2)
    code = torch.empty(out.shape, dtype=torch.uint8)
    lib.pool_forward(x.data_ptr(), out.data_ptr(), code.data_ptr(), n * c * (h // 2), w // 2)
    return out, code


def _backward(lib: ctypes.CDLL, grad: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The input gradient: each pooled gradient at its window's coded corner, zero elsewhere."""
    n, c, h, w = grad.shape
    grad = grad.contiguous()
    grad_in = grad.new_empty(n, c, 2 * h, 2 * w)
    lib.pool_backward(grad.data_ptr(), code.data_ptr(), grad_in.data_ptr(), n * c * h, w)
    return grad_in


def native_max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` of a map :func:`takes_native` accepts: the values only (no gradient)."""
    return _forward(native_kernels(), x)[0]


class NativeMaxPool2x2(torch.autograd.Function):
    """``F.max_pool2d(x, 2)`` of a contiguous float32 CPU NCHW map with even sides, through the C loops."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out, code = _forward(native_kernels(), x)
        ctx.save_for_backward(code)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable  # the C backward records no graph: a second order raises
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _backward(native_kernels(), grad, ctx.saved_tensors[0])


def takes_native(x: torch.Tensor) -> bool:
    """Whether :class:`NativeMaxPool2x2` pools ``x`` (and the kernels are available)."""
    return (x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous()
            and not is_functorch_wrapped_tensor(x)  # under vmap or torch.func.grad: MaxPool2x2 has their rules
            and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0 and native_kernels() is not None)

