"""Loading official BAT checkpoints and 2-D ImageNet weights into our models.

`load_checkpoint` reads a file safely (weights_only unless the caller trusts a legacy pickle),
`adapt_state_dict` maps its tensors onto a model the way the official `--resume` does (strip
`module.`, inflate 2-D kernels to 3-D, skip other shape mismatches) and reports every decision.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoprep.errors import PathError

log = logging.getLogger(__name__)

TRUSTED_LEGACY_HINT = (
    "if you trust this file, load it with the trusted-legacy option (trusted_legacy=True), "
    "which unpickles arbitrary Python objects"
)


class CheckpointError(PathError):
    """A checkpoint that cannot be read, or (strict loading) does not fit the model."""


@dataclass
class AdaptReport:
    """What adapt_state_dict did with each key: model keys it filled, inflated, skipped or lacked."""

    loaded: list[str] = field(default_factory=list)  # copied as is (inflated ones included)
    inflated: list[str] = field(default_factory=list)  # 2-D -> 3-D (or reshaped) before loading
    skipped: list[str] = field(default_factory=list)  # in both, shapes incompatible: model keeps its init
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint lacks
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks (ignored)
    reasons: dict[str, str] = field(default_factory=dict)  # skipped key -> why

    @property
    def exact(self) -> bool:
        """True when every key matched by name and shape with nothing inflated: a strict load."""
        return not (self.inflated or self.skipped or self.missing or self.unexpected)

    def summary(self) -> str:
        """One line with the counts, for logs."""
        return (
            f"loaded {len(self.loaded)} tensors ({len(self.inflated)} inflated), skipped {len(self.skipped)}, "
            f"missing {len(self.missing)}, unexpected {len(self.unexpected)}"
        )

    def details(self, *, limit: int = 10) -> str:
        """Multi-line listing of the non-exact keys (at most `limit` per kind), for errors and -v logs."""
        lines = [self.summary()]
        for kind, keys in (("inflated", self.inflated), ("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
                lines.append(f"  {kind}: {', '.join(keys[:limit])}{more}")
        for key in self.skipped[:limit]:
            lines.append(f"  skipped {key}: {self.reasons.get(key, '')}")
        if len(self.skipped) > limit:
            lines.append(f"  skipped: +{len(self.skipped) - limit} more")
        return "\n".join(lines)


def _unsafe_globals(path: Path) -> list[str] | None:
    """Python globals a zip checkpoint needs beyond weights_only's allowlist; None if not a zip checkpoint."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):
        return None


def load_checkpoint(
    path: str | PathLike[str], *, trusted_legacy: bool = False, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint file as a dict: with weights_only=True, or fully unpickled when trusted_legacy.

    Returns the file's top-level dict as is: an official checkpoint ({'epoch', 'arch', 'state_dict',
    'best_prec1', 'optim'}) or a bare state dict; `checkpoint_state_dict` picks the weights from either.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        if trusted_legacy:
            log.warning("%s: loading with weights_only=False (trusted legacy file)", path)
            checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        else:
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if trusted_legacy:
            raise CheckpointError(path, f"not a readable checkpoint ({error})") from error
        unsafe = _unsafe_globals(path)
        if unsafe:
            reason = f"holds pickled Python objects beyond tensors ({', '.join(unsafe)}); {TRUSTED_LEGACY_HINT}"
        else:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            reason = f"cannot be read with weights_only=True ({first_line}); {TRUSTED_LEGACY_HINT}"
        raise CheckpointError(path, reason) from error
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ModuleNotFoundError) as error:
        raise CheckpointError(path, f"not a readable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(path, f"holds a {type(checkpoint).__name__}, not a dict of tensors")
    return dict(checkpoint)


def checkpoint_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint: its 'state_dict' entry when present, else the mapping itself."""
    state = checkpoint.get("state_dict", checkpoint)
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` prefix DataParallel/DDP put on every key (other keys unchanged)."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def inflate_weight(weight: torch.Tensor, *, target_shape: torch.Size | tuple[int, ...]) -> torch.Tensor | None:
    """Fit a checkpoint tensor to `target_shape`, or None when it cannot be done.

    A 2-D kernel [O, I, kh, kw] (or a 3-D one with T=1) becomes [O, I, T, kh, kw] by repeating it T
    times along time and dividing by T (I3D inflation: a static clip gives the 2-D response away from
    the temporal border); a Linear [O, I] becomes a 1x1x1 conv [O, I, 1, 1, 1].
    """
    target = tuple(target_shape)
    if tuple(weight.shape) == target:
        return weight
    if len(target) == 5:
        out_ch, in_ch, time, kh, kw = target
        if weight.dim() == 4 and tuple(weight.shape) == (out_ch, in_ch, kh, kw):
            weight = weight.unsqueeze(2)
        if weight.dim() == 5 and tuple(weight.shape) == (out_ch, in_ch, 1, kh, kw):
            return weight.repeat(1, 1, time, 1, 1) / time if time > 1 else weight
        if weight.dim() == 2 and (kh, kw, time) == (1, 1, 1) and tuple(weight.shape) == (out_ch, in_ch):
            return weight.reshape(target)
    return None


def adapt_state_dict(
    model: nn.Module, state: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], AdaptReport]:
    """Map a checkpoint (or its state dict) onto `model`'s keys; load the result with strict=False.

    Mirrors the official `--resume`: `module.` stripped, 2-D kernels inflated, other shape mismatches
    (e.g. a 1000-class fc) skipped and reported, missing keys reported, extra keys ignored.
    """
    source = strip_module_prefix(checkpoint_state_dict(state))
    target = model.state_dict()
    report = AdaptReport()
    adapted: dict[str, torch.Tensor] = {}
    for key, current in target.items():
        if key not in source:
            # BN batch counters are not weights (pre-1.0 and 2-D ImageNet files lack them): not reported.
            if not key.endswith("num_batches_tracked"):
                report.missing.append(key)
            continue
        value = source[key]
        fitted = inflate_weight(value, target_shape=current.shape)
        if fitted is None:
            report.skipped.append(key)
            report.reasons[key] = f"checkpoint shape {list(value.shape)} vs model shape {list(current.shape)}"
            continue
        if fitted is not value:
            report.inflated.append(key)
        adapted[key] = fitted.to(dtype=current.dtype)
        report.loaded.append(key)
    report.unexpected = [key for key in source if key not in target]
    return adapted, report


def load_into(
    model: nn.Module,
    path: str | PathLike[str],
    *,
    strict: bool = False,
    trusted_legacy: bool = False,
) -> AdaptReport:
    """Load a checkpoint file into `model` and return the report.

    strict=True demands an exact match (same keys and shapes, nothing inflated or skipped) and raises
    CheckpointError listing the differences; strict=False adapts and logs what it did.
    """
    checkpoint = load_checkpoint(path, trusted_legacy=trusted_legacy)
    adapted, report = adapt_state_dict(model, checkpoint)
    if strict and not report.exact:
        raise CheckpointError(path, f"does not match the model exactly:\n{report.details()}")
    model.load_state_dict(adapted, strict=False)
    log.info("%s: %s", path, report.summary())
    if not report.exact:
        log.debug("%s: %s", path, report.details())
    return report
