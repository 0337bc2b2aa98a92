"""Training configs: the shipped YAMLs, overrides, and start-up errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lagernvs.config import apply_overrides
from lagernvs.training.config import LoopConfig
from lagernvs.training.train import TrainConfig, load_train_config, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "train"

OFFICIAL = {
    # name: (preset, lr, max_steps, grad_clip, recipe, datasets)
    "re10k": ("re10k_2v_256", 4e-4, 100_000, 1.0, "re10k", ["re10k"]),
    "dl3dv": ("dl3dv_256", 4e-4, 100_000, 3.0, "dl3dv", ["dl3dv"]),
    "general": ("general_512", 1e-4, 250_000, 3.0, "general", ["re10k", "dl3dv"]),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_configs_hold_the_published_recipe(name):
    preset, lr, steps, clip, recipe, datasets = OFFICIAL[name]
    config = load_train_config(CONFIGS / f"{name}.yaml")
    assert config.model.preset == preset and not config.model.freeze_encoder
    assert config.optim.lr == lr and config.optim.betas == (0.9, 0.95)
    assert config.optim.weight_decay == 0.05 and config.optim.warmup_steps == 3000
    assert config.optim.lr_schedule == "cosine" and config.optim.grad_clip == clip
    assert config.optim.skip_factor == 5.0
    assert config.loop.max_steps == steps and config.loop.global_batch_size == 512
    assert config.loop.gradient_checkpointing and config.loop.mixed_precision == "auto"
    assert config.loss.mse_weight == 1.0 and config.loss.perceptual_weight == 0.5
    assert config.data.recipe == recipe and [d.dataset for d in config.data.train] == datasets


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_global_batch_is_kept_on_any_gpu_count(name):
    loop = load_train_config(CONFIGS / f"{name}.yaml").loop
    for world_size in (1, 2, 8, 64):
        accumulation = loop.gradient_accumulation_steps(world_size)
        assert accumulation * loop.micro_batch_size * world_size == 512


def test_batch_not_divisible_by_world_size_names_the_key():
    loop = LoopConfig(global_batch_size=512, micro_batch_size=8)
    with pytest.raises(ValueError, match=r"'loop\.global_batch_size'.*x number of processes \(3\)"):
        loop.gradient_accumulation_steps(3)


def test_tiny_config_is_small_and_synthetic():
    config = load_train_config(CONFIGS / "tiny.yaml")
    assert config.model.preset == "tiny" and config.data.synthetic is not None
    assert config.data.synthetic.image_size <= 64 and config.loop.max_steps <= 1000
    assert config.loss.perceptual_weight == 0.0
    assert config.loop.gradient_accumulation_steps(1) == 1


def test_overrides_are_typed_and_nested():
    config = load_train_config(
        CONFIGS / "re10k.yaml",
        [
            "optim.lr=1e-4",  # YAML reads this as a string: still a float
            "optim.betas=[0.8, 0.9]",
            "loop.micro_batch_size=4",
            "optim.ema_decay=0.999",
            "model.overrides.renderer_depth=6",
            "data.val_shards=null",
        ],
    )
    assert config.optim.lr == 1e-4 and config.optim.betas == (0.8, 0.9)
    assert config.loop.micro_batch_size == 4 and config.optim.ema_decay == 0.999
    assert config.model.overrides == {"renderer_depth": 6}
    assert config.data.val_shards is None


def test_defaults_need_shards_and_are_otherwise_the_re10k_recipe():
    with pytest.raises(ValueError, match=r"'data\.train\[0\]\.shards': is required"):
        load_train_config(None)
    config = load_train_config(None, ["data.train=[{shards: somewhere}]"])
    assert config.optim == load_train_config(CONFIGS / "re10k.yaml").optim
    assert config.loop == TrainConfig().loop


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("optim.lrr=1", r"unknown config key 'optim\.lrr'.*valid keys in section 'optim'"),
        ("loops.max_steps=3", r"unknown config key 'loops'"),
        ("loop.max_steps=abc", r"'loop\.max_steps': expected an integer"),
        ("loop.max_steps=2.5", r"'loop\.max_steps': expected an integer"),
        ("optim.lr=fast", r"'optim\.lr': expected a number"),
        ("loop.gradient_checkpointing=3", r"'loop\.gradient_checkpointing': expected true"),
        ("loop.mixed_precision=fp16", r"'loop\.mixed_precision': expected one of"),
        ("optim.betas=[0.9]", r"'optim\.betas': expected 2 values"),
        ("optim.betas=[0.9, 1.5]", r"'optim\.betas\[1\]': must be in \[0, 1\)"),
        ("optim.lr=0", r"'optim\.lr': must be > 0"),
        ("optim.lr_schedule=wavy", r"'optim\.lr_schedule': unknown schedule 'wavy'"),
        ("optim.warmup_steps=200000", r"'optim\.warmup_steps'.*smaller than loop\.max_steps"),
        ("loop.micro_batch_size=7", r"'loop\.global_batch_size': 512 is not divisible"),
        ("loop.checkpoints_total_limit=0", r"'loop\.checkpoints_total_limit'"),
        ("model.preset=huge", r"'model\.preset': unknown preset 'huge'"),
        ("model.checkpoint=a.pt", r"'model\.vggt_weights'.*cannot be combined"),
        ("loss.mse_weight=-1", r"loss\.mse_weight must be a non-negative number"),
        (
            "data.train=[{shards: s, sampler: {num_targets: 0}}]",
            r"'data\.train\[0\]\.sampler'",
        ),
        (
            "data.train=[{dataset: re10k, colour: red}]",
            r"unknown config key 'data\.train\[0\]\.colour'",
        ),
        ("data.train=[{shards: s, weight: 0}]", r"'data\.train\[0\]\.weight': must be > 0"),
        ("data.num_workers=-1", r"'data\.num_workers': must be >= 0"),
        ("loop.log_with=wandb", r"'loop\.log_with': expected one of"),
    ],
)
def test_bad_values_fail_naming_the_key(override, pattern):
    overrides = [override]
    if override.startswith("model.checkpoint"):
        overrides.append("model.vggt_weights=b.pt")
    with pytest.raises(ValueError, match=pattern):
        load_train_config(CONFIGS / "re10k.yaml", overrides)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="must look like key.sub=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ValueError, match="not valid YAML.*quote it"):
        apply_overrides({}, ["data.val_shards=[a, {b]"])
    with pytest.raises(ValueError, match="'loop.max_steps': is a value"):
        apply_overrides({"loop": {"max_steps": 3}}, ["loop.max_steps.x=1"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_train_config(bad)


def test_cli_fails_at_start_up_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="unknown config key 'optim.lrr'"):
        main(
            [
                "--config",
                str(CONFIGS / "tiny.yaml"),
                "--output-dir",
                str(out),
                "--set",
                "optim.lrr=1",
            ]
        )
    assert not out.exists()


def test_missing_shards_fail_at_start_up_naming_the_key(tmp_path):
    out = tmp_path / "run"
    argv = ["--config", str(CONFIGS / "re10k.yaml"), "--output-dir", str(out)]
    argv += ["--set", f"data.train=[{{shards: '{tmp_path}/none-{{000..003}}.tar'}}]"]
    with pytest.raises(FileNotFoundError, match=r"'data\.train\[0\]\.shards'.*none-000\.tar"):
        main(argv)
    assert not (out / "checkpoints").exists()
