"""Checkpoints in the official layout, written atomically, with what an exact resume needs.

Official keys: epoch (epochs done), arch, state_dict (no `module.` prefix), best_prec1,
optim. Ours: scaler, rng (python, numpy, torch, cuda), sampler_epoch, iteration, seed,
config. Every value is a tensor or a plain Python value, so `torch.load(weights_only=True)`
reads it.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videoprep.atomic import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = "_checkpoint.pth.tar"
BEST_SUFFIX = "_model_best.pth.tar"


def checkpoint_path(snapshot_dir: str | os.PathLike[str], arch: str) -> Path:
    """`{snapshot_dir}/{arch}_checkpoint.pth.tar`: the latest state of a run."""
    return Path(snapshot_dir) / f"{arch}{CHECKPOINT_SUFFIX}"


def best_path(snapshot_dir: str | os.PathLike[str], arch: str) -> Path:
    """`{snapshot_dir}/{arch}_model_best.pth.tar`: the state with the best validation top-1."""
    return Path(snapshot_dir) / f"{arch}{BEST_SUFFIX}"


def capture_rng_state() -> dict[str, Any]:
    """Every global random generator a training step touches, as weights_only-loadable values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put the generators back where capture_rng_state found them."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state((
        npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"]
    ))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning("checkpoint has %d CUDA RNG states, this machine %d GPUs: CUDA RNG not restored",
                        len(cuda_states), torch.cuda.device_count())


def save_checkpoint(state: dict[str, Any], *, snapshot_dir: str | os.PathLike[str], arch: str, is_best: bool) -> Path:
    """Write the checkpoint atomically (temp + rename); copy it to model_best, also atomically."""
    target = checkpoint_path(snapshot_dir, arch)
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    if is_best:
        with atomic_path(best_path(snapshot_dir, arch)) as tmp:
            shutil.copyfile(target, tmp)
    log.info("saved %s (epoch %s)%s", target, state.get("epoch"), " and model_best" if is_best else "")
    return target
