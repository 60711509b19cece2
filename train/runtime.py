"""Pieces both runners share: their error type and seeding."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from train.config import CLIP_FIELDS, MODEL_FIELDS, RunnerConfig
from train.models import model_names
from videoprep.errors import VideoprepError


class RunnerConfigError(VideoprepError, ValueError):
    """A flag combination the runners cannot honour (named, with the reason)."""


def seed_everything(seed: int, *, rank: int = 0) -> None:
    """Seed python, numpy and torch; ranks differ (dropout masks) while model init is broadcast by DDP."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def draw_seed() -> int:
    """A fresh seed for --seed < 0 (printed, and stored in the checkpoint so --resume reuses it)."""
    return int(np.random.SeedSequence().entropy % 1_000_000)


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def adopt_recorded_model(cfg: RunnerConfig, checkpoint: Mapping[str, Any], *, source: str,
                         instead: str = "") -> tuple[frozenset[str], str | None]:
    """Take the model and clip settings a checkpoint records ('model', 'clip') in place of the flags' defaults.

    A flag given on the command line that contradicts a recorded value is an error naming both;
    `instead` is appended to its hint (e.g. training's --soft_resume). Returns the fields taken and
    the line that says so (None for official checkpoints, which record nothing: flags decide).
    """
    fields = (*MODEL_FIELDS, *CLIP_FIELDS)
    earlier = {k: v for k, v in checkpoint.get("config", {}).items() if k in fields}  # before 'model'/'clip' existed
    recorded = {**earlier, **checkpoint.get("model", {}), **checkpoint.get("clip", {})}
    taken = []
    for name in fields:
        if name not in recorded:
            continue
        value, current = recorded[name], getattr(cfg, name)
        if name in cfg.given and current != value:
            flag, drop = f"--{name} {_shown(current)}", f"--{name}"
            if name in cfg.preset_fields:
                flag, drop = f"--preset {cfg.preset} (it sets --{name} {_shown(current)})", "--preset"
            raise RunnerConfigError(
                f"{source}: {flag} contradicts the checkpoint, which records {name} {_shown(value)}; "
                f"drop {drop} (the checkpoint builds the model){instead}")
        setattr(cfg, name, value)
        taken.append(name)
    if not taken:
        return frozenset(), None
    shown = ", ".join(f"{name} {_shown(recorded[name])}" for name in taken)
    return frozenset(taken), f"model and clips as {source} records them: {shown}"


def check_channel_order(cfg: RunnerConfig, checkpoint: Mapping[str, Any], *, source: str) -> None:
    """A model trained on BGR clips (official img mode) must not be fed RGB ones, nor the reverse (once the backend is known)."""
    recorded = checkpoint.get("clip", {}).get("channels")
    current = "bgr" if cfg.bgr else "rgb"
    if recorded is None or recorded == current:
        return
    if recorded == "bgr":
        fix = "feed it JPEG frame folders with --backend frames --read_mode img, as it was trained"
    else:
        fix = "add --read_mode video (frames are then fed as RGB) or --backend pyav on video files"
    raise RunnerConfigError(f"{source}: the model was trained on {recorded.upper()} clips but this run feeds "
                            f"{current.upper()} (backend {cfg.loader_backend}, --read_mode {cfg.read_mode}); {fix}")


def check_arch(cfg: RunnerConfig, *, taken: frozenset[str], source: str) -> None:
    """--arch (or the arch a checkpoint records) must name one of our models."""
    if cfg.arch not in model_names():
        where = f"{source}: arch" if "arch" in taken else "--arch"
        raise RunnerConfigError(f"{where} {cfg.arch!r} is not one of {', '.join(model_names())}")
