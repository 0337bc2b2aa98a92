"""Perceptual networks and their pretrained weights, looked up locally and never downloaded.

* :class:`LPIPSVGG`: LPIPS v0.1 with the VGG-16 trunk (a metric, and a loss option);
* :class:`VGGPerceptualLoss`: the LVSM / GS-LRM VGG-19 feature L1 loss of the official recipe.

Their ImageNet weights (and Inception's for FID/KID) are third-party files this project cannot
fetch. torchvision and torch-fidelity keep such files in ``torch.hub.get_dir()/checkpoints``
(``$TORCH_HOME/hub/checkpoints``, ``TORCH_HOME`` defaulting to ``~/.cache/torch``); we look there
and, when a file is missing, stop with a message naming the exact path to fill and the URL to
fetch it from on another machine.

VGG-19 loss details. The images in [0, 1] are mapped Caffe-style, ``x * 255 - mean`` with the
ImageNet mean in 0-255 units ``(123.68, 116.779, 103.939)`` (RGB), then fed to VGG-19 with max
pooling replaced by average pooling, as the recipe does; the loss is the mean absolute difference
of the mapped inputs (divisor 1.0) plus those of the ReLU outputs after conv1_2, conv2_2,
conv3_2, conv4_2 and conv5_2, divided by 2.6, 4.8, 3.7, 5.6 and 0.15 (published as
``* 10 / 1.5``) so the six terms have similar magnitudes; the sum is divided by 255, which makes
the input term the L1 distance in [0, 1] units. Assumption: the recipe's weights are the
MatConvNet ``imagenet-vgg-verydeep-19.mat``, trained on Caffe-style inputs. We use torchvision's
ImageNet VGG-19 (``vgg19-dcbb9e9d.pth``), trained on ``(x - mean) / std`` inputs, and keep the
recipe's Caffe-style mapping and divisors; the divisors' balance was set for the MatConvNet
weights and cannot be re-measured here without them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import lpips
import torch
from torch import Tensor, nn
from torchvision.models import VGG16_Weights, VGG19_Weights

from lagernvs.quality import check_pair, image_mean

__all__ = [
    "INCEPTION_FID",
    "LPIPSVGG",
    "VGG16_IMAGENET",
    "VGG19_IMAGENET",
    "HubWeights",
    "VGGPerceptualLoss",
    "hub_checkpoint_dir",
    "load_vgg_features",
    "vgg19_trunk",
]


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


CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
INPUT_DIVISOR = 1.0
# (name, end index in torchvision's vgg19().features, divisor)
PERCEPTUAL_LAYERS: tuple[tuple[str, int, float], ...] = (
    ("relu1_2", 4, 2.6),
    ("relu2_2", 9, 4.8),
    ("relu3_2", 14, 3.7),
    ("relu4_2", 23, 5.6),
    ("relu5_2", 32, 1.5 / 10),
)
_VGG19_PLAN = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, 256, "pool")
_VGG19_PLAN += (512, 512, 512, 512, "pool", 512, 512)


def vgg19_trunk() -> nn.Sequential:
    """VGG-19 layers up to relu5_2, indexed like torchvision's ``vgg19().features``.

    Pooling is average pooling (the recipe's choice); it has no weights, so torchvision's
    checkpoint loads unchanged.
    """
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19_PLAN:
        if item == "pool":
            layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*layers)


class VGGPerceptualLoss(nn.Module):
    """The LVSM / GS-LRM VGG-19 feature L1 loss (see the module docstring), a scalar.

    Weights come from ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``; a missing file raises
    FileNotFoundError naming it, unless ``random_features=True`` (randomly initialised trunk, for
    tests). The trunk is frozen and stays in eval mode; gradients flow to the prediction only.
    """

    def __init__(self, random_features: bool = False) -> None:
        super().__init__()
        trunk = vgg19_trunk()
        if not random_features:
            state = load_vgg_features(
                VGG19_IMAGENET,
                "The VGG-19 perceptual loss (perceptual_weight > 0)",
                hint="Without it set perceptual_weight=0, or random_features=True (tests only).",
            )
            wanted = trunk.state_dict().keys()
            missing = sorted(set(wanted) - set(state))
            if missing:
                raise ValueError(f"VGG-19 checkpoint lacks trunk tensors {missing}")
            trunk.load_state_dict({key: state[key] for key in wanted})
        bounds = [0] + [end for _, end, _ in PERCEPTUAL_LAYERS]
        self.blocks = nn.ModuleList(
            trunk[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        )
        self.divisors = tuple(divisor for _, _, divisor in PERCEPTUAL_LAYERS)
        self.register_buffer(
            "mean", torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1), persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Stay in eval mode whatever the surrounding model does."""
        return super().train(False)

    def _features(self, images: Tensor) -> list[Tensor]:
        features = [images * 255.0 - self.mean]
        for block in self.blocks:
            features.append(block(features[-1]))
        return features

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss between (N, 3, H, W) images in [0, 1]; H and W must be at least 16."""
        if min(pred.shape[-2:]) < 16:
            raise ValueError(
                f"the VGG perceptual loss pools 4 times, so images need at least 16 pixels per "
                f"side; got {tuple(pred.shape[-2:])} (set perceptual_weight=0 for tiny images)"
            )
        with torch.no_grad():
            target_features = self._features(target)
        total = pred.new_zeros(())
        divisors = (INPUT_DIVISOR, *self.divisors)
        for divisor, p, t in zip(divisors, self._features(pred), target_features, strict=True):
            total = total + (p - t).abs().mean() / divisor
        return total / 255.0


def _lpips_linear_weights() -> Path:
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    if not path.is_file():
        raise FileNotFoundError(
            f"the lpips package lacks its linear-layer weights {path}; reinstall it "
            "(pip install --force-reinstall lpips)"
        )
    return path


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 with the VGG-16 trunk, per image and optionally restricted to a mask.

    ``pretrained=True`` loads torchvision's ImageNet VGG-16 from the torch hub cache
    (``vgg16-397923af.pth``) and raises FileNotFoundError naming that file when it is missing;
    nothing is ever downloaded. ``pretrained=False`` keeps a random trunk (tests). The linear
    heads always come from the lpips package. The network is frozen and stays in eval mode, but
    gradients flow to the images, so it also serves as a loss.

    The score is the mean of lpips' spatial map (each layer's distance upsampled to the image
    size); its unmasked mean equals lpips' standard spatially averaged value to ~1e-7.
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        trunk = (
            load_vgg_features(VGG16_IMAGENET, "LPIPS-VGG (pretrained=True)") if pretrained else None
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
            net = lpips.LPIPS(
                net="vgg", pretrained=False, pnet_rand=True, spatial=True, verbose=False
            )
        if trunk is not None:
            missing = [key for key in net.net.state_dict() if key.split(".", 1)[1] not in trunk]
            if missing:
                raise ValueError(f"VGG-16 checkpoint lacks trunk tensors {missing}")
            net.net.load_state_dict(
                {key: trunk[key.split(".", 1)[1]] for key in net.net.state_dict()}
            )
        linear = torch.load(_lpips_linear_weights(), map_location="cpu", weights_only=True)
        for index, layer in enumerate(net.lins):
            layer.load_state_dict({"model.1.weight": linear[f"lin{index}.model.1.weight"]})
        self.net = net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPSVGG:
        """Stay in eval mode (lpips' linear heads contain dropout)."""
        return super().train(False)

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-image LPIPS of (..., 3, H, W) images in [0, 1]; returns shape (...,)."""
        check_pair(pred, target)
        if pred.shape[-3] != 3:
            raise ValueError(f"LPIPS needs RGB images (..., 3, H, W), got {tuple(pred.shape)}")
        lead, dtype = pred.shape[:-3], next(self.net.parameters()).dtype
        flat_pred = pred.to(dtype).reshape(-1, *pred.shape[-3:])
        flat_target = target.to(dtype).reshape(-1, *target.shape[-3:])
        distance = self.net(flat_pred, flat_target, normalize=True)
        return image_mean(distance.reshape(*lead, 1, *pred.shape[-2:]), mask)
