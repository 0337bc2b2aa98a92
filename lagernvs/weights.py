"""Locate ImageNet-pretrained weight files in the torch hub cache, without ever downloading.

Perceptual losses and metrics (VGG-16 for LPIPS, VGG-19 for the training loss, Inception for
FID/KID) need third-party weights that this project cannot fetch. torchvision and torch-fidelity
keep such files in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``,
``TORCH_HOME`` defaulting to ``~/.cache/torch``); we look there and, when a file is missing, stop
with a message naming the exact path to fill and the URL to fetch it from on another machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import VGG16_Weights, VGG19_Weights


def hub_checkpoint_dir() -> Path:
    """Directory where torch.hub / torchvision cache checkpoint files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class HubWeights:
    """A weight file that lives in the torch hub checkpoint cache under its URL's file name."""

    url: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def path(self) -> Path:
        return hub_checkpoint_dir() / self.filename

    def require(self, purpose: str, hint: str = "") -> Path:
        """Return the cached file's path, or raise FileNotFoundError saying where to put it.

        ``hint`` is appended to the message (e.g. how to run without the file).
        """
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(
                f"{purpose} needs the pretrained weight file {path}, which is missing (weights are "
                f"never downloaded by lagernvs). Download {self.url} on a machine with internet "
                f"access and copy it to {path} (the folder is $TORCH_HOME/hub/checkpoints; "
                "TORCH_HOME defaults to ~/.cache/torch)." + (f" {hint}" if hint else "")
            )
        return path


VGG16_IMAGENET = HubWeights(VGG16_Weights.IMAGENET1K_V1.url)
VGG19_IMAGENET = HubWeights(VGG19_Weights.IMAGENET1K_V1.url)
INCEPTION_FID = HubWeights(
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)


def load_vgg_features(weights: HubWeights, purpose: str, hint: str = "") -> dict[str, torch.Tensor]:
    """Load the ``features.*`` tensors of a torchvision VGG checkpoint, keyed without the prefix.

    Loaded with ``weights_only=True``; the classifier tensors are dropped right away.
    """
    path = weights.require(purpose, hint)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {
        key.removeprefix("features."): value
        for key, value in state.items()
        if key.startswith("features.")
    }
    if not features:
        raise ValueError(
            f"{path} holds no 'features.*' tensors; expected the torchvision VGG checkpoint "
            f"from {weights.url}"
        )
    return features
