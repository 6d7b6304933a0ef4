"""Process-wide numerical set-up that genzoo's results depend on, done when genzoo is imported (this module first).

PyTorch's CPU build sends contiguous float unary ops (tanh, exp, log, sqrt, ...) to MKL's vector math library
(VML), each intra-op thread on its own chunk. The MKL in the torch 2.x wheels (oneMKL 2024.2) picks each VML
function's kernel on that function's first call; when the first call runs on several threads at once, one thread
can run a low-accuracy kernel for its whole chunk (pytorch/pytorch#188792, fixed upstream by the same warm-up in
C++, pytorch/pytorch#188791; not in the wheel genzoo pins). In some fresh 2-thread processes the first
``torch.tanh`` was wrong by hundreds of float32 epsilons on one thread's half of the elements, so a generator's
first Tanh, and with it the whole training run, a resumed run or an evaluation, came out differently
(benchmarks/log/exact-resume.md). Calling each of those functions once on a tensor too small to
be split across threads lets MKL choose its kernels on one thread, before any concurrent use.
"""

from __future__ import annotations

import torch

# the float unary ops ATen implements with MKL VML (aten/src/ATen/cpu/vml.h, IMPLEMENT_VML_MKL)
VML_OPS = ("acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2", "sin", "sqrt",
           "tan", "tanh", "trunc")  # fmt: skip


def resolve_vml_dispatch() -> None:
    """Make MKL resolve every VML kernel ATen uses, for float32 and float64, on the calling thread alone."""
    if not torch.backends.mkl.is_available():
        return
    for dtype in (torch.float32, torch.float64):
        x = torch.full((16,), 0.5, dtype=dtype)  # 16 elements: below ATen's grain size, so one thread runs it
        for name in VML_OPS:
            getattr(torch, name)(x)


resolve_vml_dispatch()
