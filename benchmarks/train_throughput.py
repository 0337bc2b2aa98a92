"""Training-step throughput and peak memory of LagerNVS presets, with and without checkpointing.

    python benchmarks/train_throughput.py                      # tiny and full-size (re10k) presets
    python benchmarks/train_throughput.py --presets tiny --steps 5
    python benchmarks/train_throughput.py --presets re10k_2v_256 --freeze-encoder --targets 1

One training step = forward (bf16 autocast on GPU, fp32 on CPU), MSE + perceptual loss (VGG-19 with
random weights: same cost; `--perceptual-weight 0` for MSE only), backward, gradient clipping and
the trainer's fused AdamW. Each configuration runs in a fresh child process so its peak memory is
its own: CUDA peak allocated memory on GPU, peak resident set size on CPU. On CPU the child's heap
(RLIMIT_DATA) is capped by `--memory-limit-gb` (default 16) so a full-size run fails cleanly
instead of exhausting the machine; such a run is reported as out of memory. Prints one line per
configuration and a JSON summary; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CONTEXT_VIEWS = 2


def _peak_cpu_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def measure(args: argparse.Namespace) -> dict:
    """Run warm-up plus timed steps of one configuration in this process."""
    import torch

    from lagernvs.models import LagerNVSModel
    from lagernvs.training.config import OptimConfig
    from lagernvs.training.losses import RenderLoss
    from lagernvs.training.optim import build_optimizer

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(0)
    model = LagerNVSModel.from_preset(args.preset).to(device).train()
    if args.freeze_encoder:
        model.reconstructor.vggt.requires_grad_(False)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    loss_fn = RenderLoss(perceptual_weight=args.perceptual_weight, random_features=True)
    loss_fn = loss_fn.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, OptimConfig(lr=1e-4))

    height, width = model.image_size
    views = CONTEXT_VIEWS + args.targets
    shape = (args.batch_size, views)
    images = torch.rand(*shape, 3, height, width, device=device)
    rays = torch.randn(*shape, 6, height, width, device=device)
    cam_tokens = torch.randn(*shape, 11, device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            output = model(images, rays, cam_tokens, CONTEXT_VIEWS)
            losses = loss_fn(output[:, CONTEXT_VIEWS:].float(), images[:, CONTEXT_VIEWS:])
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    peak_mb = (
        torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _peak_cpu_rss_mb()
    )
    return {
        "preset": args.preset,
        "gradient_checkpointing": args.gradient_checkpointing,
        "freeze_encoder": args.freeze_encoder,
        "perceptual_weight": args.perceptual_weight,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "views": f"{CONTEXT_VIEWS}+{args.targets}",
        "image_size": [height, width],
        "trainable_params_m": round(sum(p.numel() for p in trainable) / 1e6, 2),
        "seconds_per_step": round(seconds, 4),
        "target_images_per_s": round(args.batch_size * args.targets / seconds, 3),
        "peak_memory_mb": round(peak_mb, 1),
    }


def _child_command(args: argparse.Namespace, preset: str, checkpointing: bool) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--presets", preset]
    command += ["--batch-size", str(args.batch_size), "--targets", str(args.targets)]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--memory-limit-gb", str(args.memory_limit_gb)]
    command += ["--perceptual-weight", str(args.perceptual_weight)]
    if checkpointing:
        command.append("--gradient-checkpointing")
    if args.freeze_encoder:
        command.append("--freeze-encoder")
    if args.cpu:
        command.append("--cpu")
    return command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "re10k_2v_256"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--targets", type=int, default=2, help="target views per scene")
    parser.add_argument("--steps", type=int, default=1, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument(
        "--perceptual-weight", type=float, default=0.5, help="0 times MSE only (tiny.yaml)"
    )
    parser.add_argument("--cpu", action="store_true", help="run on CPU even with a GPU")
    parser.add_argument("--memory-limit-gb", type=float, default=16.0, help="CPU heap cap")
    parser.add_argument(
        "--checkpointing", choices=["both", "off", "on"], default="both", help="which runs"
    )
    parser.add_argument("--gradient-checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        import torch

        args.preset = args.presets[0]
        if not torch.cuda.is_available() or args.cpu:
            limit = int(args.memory_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        try:
            result = measure(args)
        except (MemoryError, RuntimeError) as error:
            if "memory" not in str(error).lower() and not isinstance(error, MemoryError):
                raise
            result = {"preset": args.preset, "error": f"out of memory: {str(error)[:120]}"}
        print(json.dumps(result))
        return

    results = []
    modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.checkpointing]
    for preset in args.presets:
        for checkpointing in modes:
            run = subprocess.run(
                _child_command(args, preset, checkpointing), capture_output=True, text=True
            )
            lines = run.stdout.strip().splitlines()
            if run.returncode == 0 and lines:
                result = json.loads(lines[-1])
            else:
                reason = run.stderr.strip().splitlines()[-1:] or [f"exit code {run.returncode}"]
                result = {"preset": preset, "error": reason[0][:200]}
            result["gradient_checkpointing"] = checkpointing
            results.append(result)
            if "error" in result:
                print(f"{preset:14s} ckpt={checkpointing!s:5s} FAILED: {result['error']}")
            else:
                print(
                    f"{preset:14s} ckpt={checkpointing!s:5s} {result['device']}: "
                    f"{result['seconds_per_step']:.3f} s/step, "
                    f"{result['target_images_per_s']:.2f} target images/s, "
                    f"peak {result['peak_memory_mb']:.0f} MB "
                    f"(batch {result['batch_size']}, views {result['views']}, "
                    f"{result['image_size'][0]}x{result['image_size'][1]})"
                )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
