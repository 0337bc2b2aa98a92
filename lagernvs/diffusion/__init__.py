"""The diffusion decoder: the renderer fine-tuned into a pixel-space denoiser, and sampling."""

from lagernvs.diffusion.denoiser import DenoisingRenderer
from lagernvs.diffusion.objective import NoiseSchedule, build_noise_scheduler, x0_to_model_output
from lagernvs.diffusion.sampling import flicker, sample_views, spread_by_visibility

__all__ = [
    "DenoisingRenderer",
    "NoiseSchedule",
    "build_noise_scheduler",
    "flicker",
    "sample_views",
    "spread_by_visibility",
    "x0_to_model_output",
]
