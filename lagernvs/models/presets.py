"""Named model presets: the one place that says what each official (and test) model is.

A preset lists only what differs from :class:`~lagernvs.models.LagerNVSModel`'s defaults, which
are the full-size official ``EncDecVitB/8`` dimensions (DINOv2 ViT-L/14 + 24 VGGT blocks of
width 1024, a 12-block width-768 renderer with 8x8 patches).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Official checkpoints (reference eval configs lagernvs_re10k_2v_256, lagernvs_dl3dv_2-6_v_256
    # and lagernvs_general_512).
    "re10k_2v_256": {"attention_type": "full_attention", "image_size": (256, 256)},
    "dl3dv_256": {"attention_type": "bidirectional_cross_attention", "image_size": (256, 256)},
    # The general model was trained at longest side 512 with aspect ratios 0.5 to 2.
    "general_512": {
        "attention_type": "bidirectional_cross_attention",
        "image_size": (512, 512),
        "variable_aspect": True,
        "max_aspect": 2.0,
    },
    # A few-hundred-thousand-parameter model for tests, demos and CPU training runs.
    "tiny": {
        "attention_type": "bidirectional_cross_attention",
        "image_size": (64, 64),
        "encoder_dim": 32,
        "dino_depth": 2,
        "dino_heads": 2,
        "aggregator_depth": 2,
        "aggregator_heads": 2,
        "encoder_image_size": 112,
        "renderer_width": 32,
        "renderer_heads": 2,
        "renderer_depth": 2,
    },
}


def preset_config(name: str, **overrides: Any) -> dict[str, Any]:
    """Constructor arguments of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; available presets: {sorted(PRESETS)}")
    return {**PRESETS[name], **overrides}
