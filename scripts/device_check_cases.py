"""The cases of scripts/device_check.py, one function per section (``SECTIONS``, in order)."""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import replace
from typing import Any

import torch
from device_check_goals import GOAL_VARIANT, goals
from torch import nn

from lagernvs.evaluation.speed import measure_ms
from lagernvs.models import ATTENTION_TYPES, LagerNVSModel, preset_config
from lagernvs.models.fast import FastOptions, FastRenderer, bf16_copy
from lagernvs.models.renderer import Renderer
from lagernvs.training.config import OptimConfig
from lagernvs.training.losses import LossConfig, RenderLoss
from lagernvs.training.optim import build_optimizer
from lagernvs.training.train import NovelViewLoss

SDPA_VARIANTS = ("flash", "cudnn", "efficient", "math")


def model_config(preset: str) -> dict[str, Any]:
    """Every LagerNVSModel constructor argument of ``preset`` (the defaults are full size)."""
    signature = inspect.signature(LagerNVSModel.__init__).parameters
    defaults = {name: p.default for name, p in signature.items() if name != "self"}
    return {**defaults, **preset_config(preset)}


def setup(check: Any) -> None:
    """The model sizes and the default fast path: what `pipe.render` takes on this device, in
    bf16 (on the CPU of the dry run: without CUDA graphs)."""
    check.config = model_config(check.plan.preset)
    check.fast = replace(FastOptions.fastest(check.device), bf16=True)
    check.report["environment"]["fast_path"] = check.fast.describe()


def _init(module: nn.Module) -> None:
    """Truncated-normal linear and conv weights, the model's training init; the checks apply it
    to the model's output layer too, which starts at zero and would render flat grey."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.trunc_normal_(layer.weight, std=0.02)


def build_renderer(config: dict[str, Any], attention_type: str, device: torch.device) -> Renderer:
    with torch.device(device):
        renderer = Renderer(
            attention_type,
            config["renderer_width"],
            config["renderer_depth"],
            config["renderer_heads"],
            config["patch_size"],
            config["renderer_num_registers"],
            config["renderer_mlp_ratio"],
        )
    _init(renderer)
    nn.init.normal_(renderer.per_view_register_tokens, std=0.02)
    return renderer.eval()


def build_model(config: dict[str, Any], device: torch.device) -> LagerNVSModel:
    with torch.device(device):
        model = LagerNVSModel(**config)
    _init(model.renderer.final_layer)
    return model.eval()


def scene_tokens(config: dict[str, Any], views: int, device: torch.device) -> torch.Tensor:
    """Random scene tokens of ``views`` square source views (unit scale, like the encoder's)."""
    side = config["encoder_image_size"] // config["encoder_patch_size"]
    generator = torch.Generator().manual_seed(views)
    shape = (1, views, side * side, config["renderer_width"])
    return torch.randn(shape, generator=generator).to(device)


def random_rays(targets: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, targets, 6, size, size, generator=generator).to(device)


def _peak(peak: float | None) -> int | None:
    return None if peak is None else round(peak)


def time_render(check: Any, path: FastRenderer, views: int, size: int, targets: int) -> dict:
    """Median time of one render call of ``targets`` views through ``path``."""
    plan, device = check.plan, check.device
    prepared = path.prepare_scene(scene_tokens(check.config, views, device))
    rays = random_rays(targets, size, device)
    ms, peak = measure_ms(
        lambda: path.render_views(prepared, rays),
        device,
        plan.warmup,
        plan.runs,
        plan.case_seconds,
    )
    return {"ms": round(ms, 3), "fps": round(1e3 * targets / ms, 1), "peak_mb": _peak(peak)}


def _render(renderer: nn.Module, options: FastOptions, scene: torch.Tensor, rays: torch.Tensor):
    path = FastRenderer(renderer, options)
    return path.render_views(path.prepare_scene(scene), rays).float()


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def parity(check: Any) -> None:
    """fp32 vs bf16 pixels of each renderer variant, then of encoder + renderer end to end."""
    until, size, fast = check.deadline("parity"), check.plan.goal_size, check.fast
    scene, rays = scene_tokens(check.config, 2, check.device), random_rays(2, size, check.device)

    def renderer_case(attention_type: str) -> dict[str, Any]:
        renderer = build_renderer(check.config, attention_type, check.device)
        fp32 = _render(renderer, FastOptions(), scene, rays)
        with torch.no_grad(), torch.autocast(check.device.type, torch.bfloat16):
            autocast = renderer.render_views(renderer.prepare_scene(scene), rays).float()
        fast32 = _render(renderer, replace(fast, bf16=False), scene, rays)
        fast16 = _render(renderer, fast, scene, rays)
        return {
            **_difference(autocast, fp32),
            "fast_fp32_max_abs": _max_abs(fast32, fp32),
            "fast_bf16_max_abs": _max_abs(fast16, autocast),
        }

    def model_case() -> dict[str, Any]:
        model = build_model(check.config, check.device)
        generator = torch.Generator().manual_seed(3)
        images = torch.rand(1, 2, 3, size, size, generator=generator).to(check.device)
        tokens = torch.randn(1, 2, model.config.camera_token_dim, generator=generator)
        renders = []
        for bf16 in (False, True):
            with torch.no_grad(), torch.autocast(check.device.type, torch.bfloat16, enabled=bf16):
                encoded = model.encode(images, tokens.to(check.device))
                renders.append(model.render(encoded, rays).float())
        return _difference(renders[1], renders[0])

    for attention_type in ATTENTION_TYPES:
        values = {
            "attention_type": attention_type,
            "scope": "renderer",
            "size": size,
            "views": 2,
            "targets": 2,
        }
        check.row("parity", values, lambda a=attention_type: renderer_case(a), until)
    values = {
        "attention_type": check.config["attention_type"],
        "scope": "encoder+renderer",
        "size": size,
        "views": 2,
        "targets": 2,
    }
    check.row("parity", values, model_case, until)


def _difference(bf16: torch.Tensor, fp32: torch.Tensor) -> dict[str, Any]:
    mse = float(((bf16 - fp32) ** 2).mean())
    return {
        "max_abs": _max_abs(bf16, fp32),
        "mean_abs": float((bf16 - fp32).abs().mean()),
        "psnr_db": round(10 * math.log10(1 / mse), 2) if mse > 0 else None,
    }


def _grid(check: Any, options: FastOptions, section_end: str) -> None:
    """Every attention variant, size and source-view count through ``options``, 1 target; the
    goal variant at the goal size first, so the time budget never skips those."""
    until, plan = check.deadline(section_end), check.plan
    order = sorted(ATTENTION_TYPES, key=lambda a: a != GOAL_VARIANT)
    for attention_type in order:
        renderer = build_renderer(check.config, attention_type, check.device)
        for size in sorted(plan.render_sizes, key=lambda s: s != plan.goal_size):
            for views in plan.render_views:
                values = {
                    "attention_type": attention_type,
                    "size": size,
                    "views": views,
                    "targets": 1,
                    "path": options.describe(),
                }
                check.row(
                    "renderer",
                    values,
                    lambda r=renderer, v=views, s=size: time_render(
                        check, FastRenderer(r, options), v, s, 1
                    ),
                    until,
                )
        del renderer


def renderer_fast(check: Any) -> None:
    _grid(check, check.fast, "renderer_fast")


def renderer_plain(check: Any) -> None:
    _grid(check, FastOptions(), "renderer_plain")


def _time_encoder(check: Any, module: nn.Module, views: int, bf16: bool) -> dict[str, Any]:
    plan, device = check.plan, check.device
    size, generator = plan.encoder_size, torch.Generator().manual_seed(views)
    images = torch.rand(1, views, 3, size, size, generator=generator).to(device)
    tokens = torch.randn(1, views, check.config["camera_token_dim"], generator=generator)
    tokens = tokens.to(device)

    def run() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return module(images, tokens)

    ms, peak = measure_ms(run, device, plan.warmup, plan.runs, plan.case_seconds)
    return {"ms": round(ms, 3), "peak_mb": _peak(peak)}


def encoder(check: Any) -> None:
    """Encoder latency per number of source views: fp32, bf16 autocast, bf16 weights."""
    until, plan = check.deadline("encoder"), check.plan
    model = build_model(check.config, check.device)
    modules = {
        "fp32": model.reconstructor,
        "bf16-autocast": model.reconstructor,
        "bf16-weights": bf16_copy(model.reconstructor),
    }
    for views in plan.encoder_views:
        for precision, module in modules.items():
            values = {"views": views, "size": plan.encoder_size, "precision": precision}
            check.row(
                "encoder",
                values,
                lambda m=module, v=views, b=precision != "fp32": _time_encoder(check, m, v, b),
                until,
            )


def _ablation_options(check: Any) -> list[tuple[str, FastOptions, int]]:
    """(label, options, targets) of each ablation: every fast-path option against the default."""
    fast, many = check.fast, check.plan.batch_targets
    graphs = "graphs off" if fast.cuda_graphs else "graphs on"
    return [
        ("default", fast, 1),
        ("bf16 off", replace(fast, bf16=False), 1),
        (graphs, replace(fast, cuda_graphs=not fast.cuda_graphs), 1),
        *((f"sdpa {k}", replace(fast, sdpa_kernels=(k,)), 1) for k in SDPA_VARIANTS),
        ("math backend", replace(fast, attention="math"), 1),
        ("xformers backend", replace(fast, attention="xformers"), 1),
        (f"{many} targets, one call", fast, many),
        (f"{many} targets, one call each", replace(fast, batch_targets=False), many),
    ]


def ablations(check: Any) -> None:
    until, plan = check.deadline("ablations"), check.plan
    for attention_type in sorted(ATTENTION_TYPES, key=lambda a: a != GOAL_VARIANT):
        renderer = build_renderer(check.config, attention_type, check.device)
        for views in plan.ablation_views:
            for label, options, targets in _ablation_options(check):
                values = {
                    "attention_type": attention_type,
                    "size": plan.goal_size,
                    "views": views,
                    "targets": targets,
                    "option": label,
                    "path": options.describe(),
                }
                check.row(
                    "ablations",
                    values,
                    lambda r=renderer, o=options, v=views, t=targets: time_render(
                        check, FastRenderer(r, o), v, plan.goal_size, t
                    ),
                    until,
                )
        del renderer


def compiled(check: Any) -> None:
    """torch.compile on top of the default fast path, goal variant and size (compile time too)."""
    plan, dynamo = check.plan, torch._dynamo.config
    setattr(
        dynamo, "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit", 64
    )
    options = replace(check.fast, compile="default", compile_backend=plan.compile_backend)
    renderer = build_renderer(check.config, GOAL_VARIANT, check.device)

    def case(views: int) -> dict[str, Any]:
        started = time.perf_counter()
        path = FastRenderer(renderer, options)
        prepared = path.prepare_scene(scene_tokens(check.config, views, check.device))
        path.render_views(prepared, random_rays(1, plan.goal_size, check.device))
        if check.device.type == "cuda":
            torch.cuda.synchronize(check.device)
        compile_s = round(time.perf_counter() - started, 1)
        return {**time_render(check, path, views, plan.goal_size, 1), "compile_s": compile_s}

    for views in plan.ablation_views:
        values = {
            "attention_type": GOAL_VARIANT,
            "size": plan.goal_size,
            "views": views,
            "targets": 1,
            "option": f"compile ({plan.compile_backend})",
            "path": options.describe(),
        }
        check.row(
            "compile", values, lambda v=views: case(v), plan.budget_s, plan.compile_estimate_s
        )


def training(check: Any) -> None:
    """Images/s of forward + backward at each recipe's micro batch, and one optimizer step."""
    plan, until = check.plan, check.deadline("training")
    for index, recipe in enumerate(plan.recipes):
        config = model_config(recipe.preset)

        def case(recipe: Any = recipe, config: dict = config, index: int = index) -> dict:
            share = (until - check.elapsed()) / (len(plan.recipes) - index)
            seconds = max(min(plan.train_seconds, share - 10), 0.0)
            return _train(check, recipe, config, seconds)

        values = {
            "recipe": recipe.name,
            "preset": recipe.preset,
            "attention_type": config["attention_type"],
            "micro_batch": recipe.micro_batch,
            "context_views": recipe.context_views,
            "target_views": recipe.target_views,
            "size": recipe.size,
        }
        check.row("training", values, case, until, needs_s=plan.train_seconds / 3)


def _train(check: Any, recipe: Any, config: dict[str, Any], seconds: float) -> dict[str, Any]:
    device = check.device
    with torch.device(device):
        model = LagerNVSModel(**config)
    model.train().enable_gradient_checkpointing()
    loss = NovelViewLoss(RenderLoss(LossConfig(random_features=True)).to(device))
    optimizer = build_optimizer(model, OptimConfig())
    views, size = recipe.context_views + recipe.target_views, recipe.size
    generator = torch.Generator().manual_seed(0)
    batch = {
        "images": torch.rand(recipe.micro_batch, views, 3, size, size, generator=generator),
        "rays": torch.randn(recipe.micro_batch, views, 6, size, size, generator=generator),
        "cam_tokens": torch.randn(recipe.micro_batch, views, 11, generator=generator),
    }
    batch = {key: value.to(device) for key, value in batch.items()}
    batch["num_cond_views"] = recipe.context_views

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def micro_step() -> None:
        with torch.autocast(device.type, torch.bfloat16):
            outputs = loss(model, batch)
        outputs["total"].backward()

    micro_step()  # warm-up
    optimizer_ms, _ = measure_ms(optimizer.step, device, warmup=1, runs=1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps, started = 0, time.perf_counter()
    while steps < 1 or time.perf_counter() - started < seconds:
        micro_step()
        sync()
        steps += 1
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "steps": steps,
        "seconds": round(elapsed, 1),
        "images_per_s": round(steps * recipe.micro_batch * recipe.target_views / elapsed, 2),
        "step_ms": round(1e3 * elapsed / steps, 1),
        "optimizer_step_ms": round(optimizer_ms, 1),
        "peak_mb": _peak(peak),
    }


SECTIONS = (
    setup,
    parity,
    renderer_fast,
    encoder,
    ablations,
    renderer_plain,
    training,
    compiled,
    goals,
)
