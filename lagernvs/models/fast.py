"""The renderer's fast inference path: what an interactive viewer pays per frame, made small.

:func:`fast_renderer` gives the cached :class:`FastRenderer` of a renderer; its
``prepare_scene`` / ``render_views`` take and return what the renderer's own methods do. By
default (:meth:`FastOptions.fastest`) it is, on CUDA, bf16 + torch SDPA + CUDA graphs, and
elsewhere the plain renderer, unchanged. Each piece is one switch of :class:`FastOptions`:

* ``bf16``: bfloat16 autocast with a bf16 copy of the linear and conv weights (norm gains and
  register tokens stay float32; norms, the QK-norm and the softmax statistics are computed in
  float32 as under autocast). Autocast rounds float32 weights to bf16 in the same way, so the
  images equal plain bf16 autocast bit for bit, without casting ~200 M weights per frame; they
  differ from float32 by about 1e-2 (:data:`BF16_TOLERANCE`). The copy follows in-place
  changes of the renderer's weights (an optimizer step, ``load_state_dict``).
* ``attention``, ``sdpa_kernels``: the attention backend and the torch SDPA kernels of the call
  (see :mod:`lagernvs.models.attention`); None and () keep the global choice.
* ``batch_targets``: the T targets of a call are rendered by one renderer call (off: one call
  per target, to measure what batching gains).
* ``compile``: a ``torch.compile`` mode (None: eager), with ``compile_backend``; each new input
  shape compiles once.
* ``cuda_graphs``: each input shape is captured once into a CUDA graph, then replayed; the rays
  and the prepared scene are copied into the graph's own buffers (the scene only when another
  prepared-scene object is passed). Calls are serialised by a lock, so threads may share one
  FastRenderer.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .attention import BACKENDS, SDPA_KERNELS, attention_backend, sdpa_kernels

__all__ = [
    "BF16_TOLERANCE",
    "FastOptions",
    "FastRenderer",
    "bf16_copy",
    "capture_cuda_graph",
    "fast_renderer",
]

BF16_TOLERANCE = 3e-2
"""Largest pixel difference (max abs, images in [0, 1]) expected of bf16 against float32."""

MAX_GRAPHS = 4
"""Captured input shapes kept per FastRenderer (least recently used dropped first)."""


@dataclass(frozen=True)
class FastOptions:
    """Switches of the fast path (module docstring); the defaults are the plain renderer."""

    bf16: bool = False
    attention: str | None = None
    sdpa_kernels: tuple[str, ...] = ()
    batch_targets: bool = True
    compile: str | None = None
    compile_backend: str = "inductor"
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.attention is not None and self.attention not in BACKENDS:
            raise ValueError(
                f"unknown attention backend {self.attention!r}; choose one of {BACKENDS} or None"
            )
        unknown = sorted(set(self.sdpa_kernels) - set(SDPA_KERNELS))
        if unknown:
            raise ValueError(f"unknown SDPA kernels {unknown}; choose from {sorted(SDPA_KERNELS)}")
        object.__setattr__(self, "sdpa_kernels", tuple(self.sdpa_kernels))

    @classmethod
    def fastest(cls, device: torch.device | str) -> FastOptions:
        """The default of ``device``: bf16 + CUDA graphs on CUDA, the plain renderer elsewhere."""
        if torch.device(device).type == "cuda":
            return cls(bf16=True, cuda_graphs=True)
        return cls()

    def describe(self) -> str:
        """A short label, e.g. ``"bf16+graphs"`` or ``"plain"``."""
        parts = ["bf16"] if self.bf16 else []
        if self.attention is not None:
            parts.append(self.attention)
        if self.sdpa_kernels:
            parts.append("sdpa:" + "/".join(self.sdpa_kernels))
        if not self.batch_targets:
            parts.append("per-target")
        if self.compile is not None:
            parts.append(f"compile:{self.compile_backend}:{self.compile}")
        if self.cuda_graphs:
            parts.append("graphs")
        return "+".join(parts) or "plain"

    @contextmanager
    def context(self, device_type: str) -> Iterator[None]:
        """No grad, bf16 autocast when ``bf16``, and the attention backend and SDPA kernels."""
        with ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            stack.enter_context(
                torch.autocast(device_type, torch.bfloat16, enabled=self.bf16, cache_enabled=False)
            )
            if self.attention is not None:
                stack.enter_context(attention_backend(self.attention))
            stack.enter_context(sdpa_kernels(self.sdpa_kernels))
            yield


def _matrix_layers(module: nn.Module) -> Iterator[nn.Module]:
    return (m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d))


def bf16_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` whose linear and conv layers hold bfloat16 weights (and
    biases); every other parameter (norm gains, tokens) keeps its dtype. Made outside inference
    mode, so it can be updated in place later."""
    with torch.inference_mode(False):
        copy = deepcopy(module).requires_grad_(False)
        for layer in _matrix_layers(copy):
            layer.to(torch.bfloat16)
    return copy


def _weights_signature(parameters: list[nn.Parameter]) -> tuple[tuple[int, int], ...]:
    """Where each parameter lives and how often it was changed in place (~0.1 ms for the
    full-size renderer's 320 parameters, checked once per call)."""
    return tuple((p.data_ptr(), p._version) for p in parameters)


def _render_views(renderer: nn.Module, prepared: Any, rays: torch.Tensor) -> torch.Tensor:
    return renderer.render_views(prepared, rays)


def _tree_key(tree: Any) -> Any:
    """Shapes, dtypes and devices of the tensors of a prepared scene, in its nesting."""
    if isinstance(tree, torch.Tensor):
        return (tuple(tree.shape), tree.dtype, tree.device)
    return tuple(_tree_key(item) for item in tree)


def _tree_map(fn: Callable[..., torch.Tensor], tree: Any, *others: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return fn(tree, *others)
    return [_tree_map(fn, item, *(o[i] for o in others)) for i, item in enumerate(tree)]


def capture_cuda_graph(
    fn: Callable[[], torch.Tensor], device: torch.device, warmup: int = 2
) -> Callable[[], torch.Tensor]:
    """Run ``fn`` ``warmup`` times on a side stream, capture one call into a CUDA graph and
    return its replay, which reruns the captured kernels and returns the same output tensor.

    The capture is thread-local, so other threads (a viewer's clients) may use the GPU meanwhile.
    """
    if device.type != "cuda":
        raise ValueError(
            f"CUDA graphs need CUDA tensors, got {device.type}; turn cuda_graphs off "
            "(FastOptions.fastest turns it on for CUDA only)"
        )
    with torch.cuda.device(device):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            output = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return output

    return replay


class _Captured:
    """One input shape of the render call with its static scene and ray buffers."""

    def __init__(self, run: Callable[..., torch.Tensor], prepared: Any, rays: torch.Tensor):
        with torch.inference_mode(False):  # buffers that later calls may overwrite
            self.prepared = _tree_map(torch.clone, prepared)
            self.rays = rays.clone()
        self.source = prepared
        self.replay = capture_cuda_graph(lambda: run(self.prepared, self.rays), rays.device)

    def __call__(self, prepared: Any, rays: torch.Tensor) -> torch.Tensor:
        if prepared is not self.source:
            _tree_map(torch.Tensor.copy_, self.prepared, prepared)
            self.source = prepared
        self.rays.copy_(rays)
        return self.replay().clone()


class FastRenderer:
    """``prepare_scene`` / ``render_views`` of a renderer through the fast path of ``options``.

    Holds the renderer weakly (the cache of :func:`fast_renderer` must not keep it alive). Weights
    changed in place or moved are followed; parameters replaced by new objects are not (make a
    new FastRenderer then).
    """

    def __init__(self, renderer: nn.Module, options: FastOptions | None = None) -> None:
        self.options = options or FastOptions()
        self._source = weakref.ref(renderer)
        self._parameters = list(renderer.parameters())
        self._module: nn.Module | None = None
        self._signature: tuple[tuple[int, int], ...] | None = None
        self._graphs: OrderedDict[Any, _Captured] = OrderedDict()
        self._lock = threading.Lock()
        self._call: Callable[..., torch.Tensor] = _render_views
        if self.options.compile is not None:
            self._call = torch.compile(
                _render_views,
                mode=self.options.compile,
                backend=self.options.compile_backend,
                dynamic=False,
            )

    def _renderer(self) -> nn.Module:
        """The module that computes, its weights brought up to date with the source's.

        Captured graphs read weights by address: they stay valid while the weights stay where
        they are (the bf16 copy is then updated in place) and are dropped otherwise.
        """
        source = self._source()
        if source is None:
            raise ValueError("the renderer of this FastRenderer was deleted; make a new one")
        signature = _weights_signature(self._parameters)
        if self._module is not None and signature == self._signature:
            return self._module
        same_memory = self._signature is not None and [a for a, _ in signature] == [
            a for a, _ in self._signature
        ]
        if not self.options.bf16:
            self._module = source
        elif self._module is not None and same_memory:
            pairs = zip(self._module.parameters(), self._parameters, strict=True)
            with torch.no_grad():
                for mine, theirs in pairs:
                    mine.copy_(theirs)
        else:
            self._module, same_memory = bf16_copy(source), False
        if not same_memory:
            self._graphs.clear()
        self._signature = signature
        return self._module

    def prepare_scene(self, scene_tokens: torch.Tensor) -> Any:
        """The renderer's per-scene preparation (e.g. cross-attention keys/values)."""
        with self._lock:
            module = self._renderer()
            with self.options.context(scene_tokens.device.type):
                return module.prepare_scene(scene_tokens)

    def render_views(self, prepared: Any, rays: torch.Tensor) -> torch.Tensor:
        """Render rays (B, T, 6, H, W) against a prepared scene -> (B, T, 3, H, W) images
        (bfloat16 under ``bf16``)."""
        with self._lock:
            module = self._renderer()
            if self.options.batch_targets or rays.shape[1] == 1:
                return self._render(module, prepared, rays)
            views = [self._render(module, prepared, ray) for ray in rays.split(1, dim=1)]
            return torch.cat(views, dim=1)

    def _run(self, module: nn.Module, prepared: Any, rays: torch.Tensor) -> torch.Tensor:
        with self.options.context(rays.device.type):
            return self._call(module, prepared, rays)

    def _render(self, module: nn.Module, prepared: Any, rays: torch.Tensor) -> torch.Tensor:
        if not self.options.cuda_graphs:
            return self._run(module, prepared, rays)
        key = (tuple(rays.shape), rays.dtype, rays.device, _tree_key(prepared))
        captured = self._graphs.get(key)
        if captured is None:
            while len(self._graphs) >= MAX_GRAPHS:
                self._graphs.popitem(last=False)
            captured = _Captured(lambda p, r: self._run(module, p, r), prepared, rays)
            self._graphs[key] = captured
        self._graphs.move_to_end(key)
        return captured(prepared, rays)


_PATHS: weakref.WeakKeyDictionary[nn.Module, dict[FastOptions, FastRenderer]] = (
    weakref.WeakKeyDictionary()
)
_PATHS_LOCK = threading.Lock()


def fast_renderer(renderer: nn.Module, options: FastOptions | None = None) -> FastRenderer:
    """The cached :class:`FastRenderer` of ``renderer`` for ``options`` (None: the fastest for
    the renderer's device, :meth:`FastOptions.fastest`). This is the one call the pipeline and
    the viewer need: ``fast_renderer(model.renderer).render_views(prepared, rays)``."""
    if options is None:
        options = FastOptions.fastest(next(renderer.parameters()).device)
    with _PATHS_LOCK:
        paths = _PATHS.setdefault(renderer, {})
        if options not in paths:
            paths[options] = FastRenderer(renderer, options)
        return paths[options]
