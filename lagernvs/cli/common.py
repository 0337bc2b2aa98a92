"""What the subcommands of `lagernvs` share: the user-facing error type, argument types and
help texts. Imports nothing heavy, so that ``--help`` stays fast."""

from __future__ import annotations

import argparse

__all__ = ["MODEL_HELP", "PRESET_HELP", "UserFacingError", "positive_int"]

MODEL_HELP = (
    "the model: 'demo' (default), a pipeline folder, a model folder written by `lagernvs train` "
    "(RUN/model) or its run folder, an official model.pt with --preset, or 'preset:NAME' "
    "(random weights)"
)
PRESET_HELP = "preset of an official checkpoint file: re10k_2v_256, dl3dv_256 or general_512"


class UserFacingError(Exception):
    """An error whose message is meant for the command-line user, printed as one line."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
