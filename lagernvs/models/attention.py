"""The one attention op of the package: torch SDPA, xformers or an explicit softmax.

Every attention layer (DINO, aggregator, renderer) calls :func:`attention`, so the kernel is chosen
in one place. The backend comes from :func:`set_attention_backend` or the environment variable
``LAGERNVS_ATTENTION`` (read at import):

* ``"auto"`` (default) and ``"sdpa"``: torch ``scaled_dot_product_attention``, which picks its
  own kernel (flash, cuDNN, memory-efficient or math; on Hopper GPUs flash or cuDNN in bf16);
  :func:`sdpa_kernels` restricts that choice, e.g. to time one kernel against another;
* ``"xformers"``: xformers memory-efficient attention (CUDA only, an optional install);
* ``"math"``: an explicit ``softmax(q kᵀ / √d) v``, the readable definition used to test the others.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = ("auto", "sdpa", "xformers", "math")
SDPA_KERNELS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def _validated(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {BACKENDS}")
    return name


_backend = _validated(os.environ.get("LAGERNVS_ATTENTION", "auto"))


@lru_cache(maxsize=1)
def xformers_available() -> bool:
    """Whether the optional ``xformers`` package is importable."""
    return importlib.util.find_spec("xformers") is not None


def set_attention_backend(name: str) -> None:
    """Select the attention kernel for the whole package (see the module docstring)."""
    global _backend
    _backend = _validated(name)


def get_attention_backend() -> str:
    """The currently selected backend name."""
    return _backend


@contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Temporarily select an attention backend, e.g. ``with attention_backend("math"): ...``."""
    previous = get_attention_backend()
    set_attention_backend(name)
    try:
        yield
    finally:
        set_attention_backend(previous)


@contextmanager
def sdpa_kernels(names: Sequence[str]) -> Iterator[None]:
    """Let torch SDPA use only the named kernels (keys of ``SDPA_KERNELS``); none: all of them.

    A kernel that cannot run the inputs (e.g. flash on float32) makes SDPA raise a RuntimeError.
    """
    unknown = sorted(set(names) - set(SDPA_KERNELS))
    if unknown:
        raise ValueError(f"unknown SDPA kernels {unknown}; choose from {sorted(SDPA_KERNELS)}")
    if not names:
        yield
        return
    with sdpa_kernel([SDPA_KERNELS[name] for name in names]):
        yield


def _math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    scores = torch.matmul(q, k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return torch.matmul(scores.softmax(dim=-1), v)


def _xformers_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if not q.is_cuda:
        raise ValueError("the xformers attention backend needs CUDA tensors; use 'sdpa' on CPU")
    import xformers.ops as xops

    # xformers expects (batch, tokens, heads, head_dim).
    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention scaled by 1/√head_dim, without mask or dropout.

    Args:
        q: queries (B, heads, Nq, head_dim).
        k: keys (B, heads, Nk, head_dim).
        v: values (B, heads, Nk, head_dim).

    Returns:
        (B, heads, Nq, head_dim).
    """
    if not q.dtype == k.dtype == v.dtype:
        # Under autocast the QK-norms return float32 while the value projection is half
        # precision; compute in the value's dtype, as autocast's SDPA policy does.
        q, k = q.to(v.dtype), k.to(v.dtype)
    backend = _backend
    if backend in ("auto", "sdpa"):
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "xformers":
        if not xformers_available():
            raise ImportError(
                "attention backend 'xformers' was selected but xformers is not installed; "
                "`pip install lagernvs[xformers]` or select 'sdpa'"
            )
        return _xformers_attention(q, k, v)
    return _math_attention(q, k, v)
