"""The diffusion decoder: the renderer fine-tuned into a pixel-space denoiser, its noise
schedules, and how its samples vary. The sampling loop is the pipeline's."""

from lagernvs.diffusion.denoiser import DenoisingRenderer, PreparedScene
from lagernvs.diffusion.objective import NoiseSchedule, build_noise_scheduler, x0_to_model_output
from lagernvs.diffusion.variation import flicker, spread_by_visibility

__all__ = [
    "DenoisingRenderer",
    "NoiseSchedule",
    "PreparedScene",
    "build_noise_scheduler",
    "flicker",
    "spread_by_visibility",
    "x0_to_model_output",
]
