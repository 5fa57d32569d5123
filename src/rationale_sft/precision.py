"""Whether bfloat16 autocast runs on a device: asked for, and the device computes in bf16 natively.

A CPU without native bf16 arithmetic (AVX2 only, as on many laptops and older servers) emulates it, and the
emulation is several times slower than float32 (measured: a gpt2-xs training step 6.3 s under bf16 autocast
against 1.1 s in float32 on an AVX2 CPU). So ``bf16: true`` in a config asks for bf16 where it pays; on any
other device the work runs in float32, with a warning, and the stage records what it used.

>>> resolve_bf16(False, "cpu")
False
"""

from __future__ import annotations

import warnings


def bf16_native(device) -> bool:
    """Whether ``device`` ("cpu", "cuda", a ``torch.device``) computes in bfloat16 natively.

    A GPU: what torch reports for it. A CPU: whether oneDNN has bf16 kernels for it (AVX-512 with its bf16
    extensions or AMX), the same test torch uses to pick them; False if torch cannot tell.
    """
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_bf16(requested: bool, device) -> bool:
    """Whether to run under bf16 autocast: ``requested`` and native on ``device`` (a warning when it was
    requested and is not)."""
    if not requested:
        return False
    if bf16_native(device):
        return True
    import torch

    warnings.warn(f"bf16 was asked for, but this {torch.device(device).type} has no native bfloat16 arithmetic "
                  "(emulated bf16 is several times slower than float32 there); running in float32", stacklevel=2)
    return False


__all__ = ["bf16_native", "resolve_bf16"]
