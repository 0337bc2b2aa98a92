"""The LagerNVS model (encoder, renderer, attention op, presets, checkpoints) and the VGGT
camera estimator (aggregator + camera head) for unposed photos."""

from .attention import attention, attention_backend, get_attention_backend, set_attention_backend
from .camera_estimator import ESTIMATOR_PRESETS, VGGTCameraEstimator, vggt_input_size
from .camera_head import CameraHead, pose_encoding_to_cameras
from .checkpoints import (
    VGGTLoadResult,
    infer_attention_type,
    load_original_state_dict,
    load_original_weights,
    load_vggt_weights,
)
from .lagernvs import LagerNVSModel
from .presets import PRESETS, preset_config
from .renderer import ATTENTION_TYPES

__all__ = [
    "ATTENTION_TYPES",
    "ESTIMATOR_PRESETS",
    "CameraHead",
    "VGGTCameraEstimator",
    "pose_encoding_to_cameras",
    "vggt_input_size",
    "PRESETS",
    "LagerNVSModel",
    "VGGTLoadResult",
    "attention",
    "attention_backend",
    "get_attention_backend",
    "infer_attention_type",
    "load_original_state_dict",
    "load_original_weights",
    "load_vggt_weights",
    "preset_config",
    "set_attention_backend",
]
