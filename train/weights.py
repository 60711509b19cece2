"""Loading official BAT checkpoints and 2-D ImageNet weights into our models.

`load_checkpoint` reads a file safely (weights_only unless the caller trusts a legacy pickle),
`adapt_state_dict` maps its tensors onto a model the way the official `--resume` does (strip
`module.`, inflate 2-D kernels to 3-D, skip other shape mismatches) and reports every decision.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videoprep.errors import PathError

log = logging.getLogger(__name__)

_CKPT_SUFFIX = "_checkpoint.pth.tar"  # train.checkpoint.CHECKPOINT_SUFFIX (no import: weights stays standalone)

TRUSTED_LEGACY_HINT = (
    "if you trust this file, add --trusted-legacy-checkpoint (full unpickling runs any code the file holds)"
)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save since 1.6
PICKLE_PROTO = 0x80  # legacy torch.save and plain pickles start with the PROTO opcode


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

    def load_lines(self, source: str | PathLike[str]) -> list[str]:
        """What a non-strict load did, for the run's output: the counts, and a loud warning under half the model."""
        total = len(self.loaded) + len(self.skipped) + len(self.missing)  # the model's tensors
        lines = [f"{source}: {self.summary()} (of the model's {total})"]
        if len(self.loaded) * 2 < total:
            lines.append(f"WARNING: only {len(self.loaded)} of the model's {total} tensors came from {source}; "
                         "the rest keep their random initial values: the weights do not fit this model (pass the "
                         f"model flags it was trained with: {MODEL_FLAGS_HINT})")
        return lines

    def one_line(self, *, limit: int = 3) -> str:
        """The differences in one line (first `limit` keys of each kind), for errors."""
        parts = []
        for kind, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("inflated", self.inflated)):
            if keys:
                more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
                parts.append(f"{len(keys)} {kind}: {', '.join(keys[:limit])}{more}")
        if self.skipped:
            more = f" (+{len(self.skipped) - limit} more)" if len(self.skipped) > limit else ""
            shapes = ", ".join(f"{key} {self.reasons.get(key, '')}" for key in self.skipped[:limit])
            parts.append(f"{len(self.skipped)} of another shape: {shapes}{more}")
        return "; ".join(parts)

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


def _file_kind_problem(path: Path) -> str | None:
    """Why a file cannot be a torch.save checkpoint, judged from its first bytes (None: it may be one)."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes), not a checkpoint"
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return f"is a truncated or corrupt checkpoint ({size} bytes; its zip directory is missing)"
        return None
    if head[0] == PICKLE_PROTO:
        return None
    text = _as_text(head)
    if text is None:
        return "is not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"
    first = text.splitlines()[0] if text.strip() else text
    return f"is a text file ({first[:30]!r}...), not a checkpoint"


def _as_text(head: bytes) -> str | None:
    """The first bytes as text when they are printable UTF-8 (a character cut at the end allowed), else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:
            return None
        text = head[: error.start].decode("utf-8")
    return text if all(c.isprintable() or c in "\n\r\t" for c in text) else None


def load_checkpoint(
    path: str | PathLike[str],
    *,
    trusted_legacy: bool = False,
    map_location: str | torch.device = "cpu",
    given_as: str = "the checkpoint path",
) -> dict[str, Any]:
    """Read a checkpoint file as a dict: with weights_only=True, or fully unpickling it when trusted_legacy.

    Returns the file's top-level dict as is: an official checkpoint ({'epoch', 'arch', 'state_dict',
    'best_prec1', 'optim'}) or a bare state dict; `checkpoint_state_dict` picks the weights from either.
    Every failure is one CheckpointError line whose hint names `given_as` (how the user passed the file).
    """
    path = Path(path)
    retry = f"check {given_as} (a file written by torch.save, e.g. a run's {{arch}}{_CKPT_SUFFIX})"
    if not path.is_file():
        raise CheckpointError(path, f"no such checkpoint file; {retry}")
    problem = _file_kind_problem(path)
    if problem is not None:
        raise CheckpointError(path, f"{problem}; {retry}")
    try:
        if trusted_legacy:
            log.warning("%s: loading with weights_only=False (trusted legacy file)", path)
            checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        else:
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if trusted_legacy:
            raise CheckpointError(path, f"not a readable checkpoint ({_first_line(error)}); {retry}") from error
        unsafe = _unsafe_globals(path)
        if unsafe:
            reason = f"holds pickled Python objects beyond tensors ({', '.join(unsafe)}); {TRUSTED_LEGACY_HINT}"
        else:
            reason = f"cannot be read with weights_only=True ({_first_line(error)}); {TRUSTED_LEGACY_HINT}"
        raise CheckpointError(path, reason) from error
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ModuleNotFoundError, KeyError,
            IndexError, TypeError) as error:
        raise CheckpointError(path, f"is not a readable checkpoint ({type(error).__name__}: "
                                    f"{_first_line(error)}); {retry}") from error
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(path, f"holds a {type(checkpoint).__name__}, not a dict of tensors; {retry}")
    return dict(checkpoint)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


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


MODEL_FLAGS_HINT = "--arch, --nonlocal_mod, --nltype, --k, --tk, --num_classes"


def load_weights(
    model: nn.Module, checkpoint: Mapping[str, Any], *, strict: bool, source: str | PathLike[str],
    relax_flag: str = "--non-strict",
) -> AdaptReport:
    """The one way weights reach a model: adapt (strip `module.`, inflate 2-D, skip shape mismatches), then load.

    strict demands an exact match (same keys and shapes, nothing inflated or skipped) and raises one
    CheckpointError line listing the differences, with a hint naming the model flags and `relax_flag`
    (the flag that loads non-strictly); the model is untouched on failure. Non-strict loads what fits.
    """
    adapted, report = adapt_state_dict(model, checkpoint)
    if strict and not report.exact:
        raise CheckpointError(source, f"does not fit the model ({report.one_line()}); {fit_hint(report, relax_flag)}")
    model.load_state_dict(adapted, strict=False)
    log.info("%s: %s", source, report.summary())
    if not report.exact:
        log.info("%s: %s", source, report.details())
    return report


def fit_hint(report: AdaptReport, relax_flag: str) -> str:
    """What to do about a strict mismatch: --num_classes N when only the classifier differs, else the model flags."""
    fc_shape = report.reasons.get("fc.weight", "")
    if fc_shape and set(report.skipped) <= {"fc.weight", "fc.bias"} and not (report.missing or report.unexpected or report.inflated):
        classes = fc_shape.removeprefix("checkpoint shape [").split(",")[0].rstrip("]")
        return f"the checkpoint has {classes} classes: pass --num_classes {classes} (or {relax_flag} to load what fits)"
    return f"pass the model flags it was trained with ({MODEL_FLAGS_HINT}), or {relax_flag} to load what fits"


def load_into(
    model: nn.Module,
    path: str | PathLike[str],
    *,
    strict: bool = False,
    trusted_legacy: bool = False,
) -> AdaptReport:
    """Read a checkpoint file and load it into `model` through load_weights; returns the report."""
    return load_weights(model, load_checkpoint(path, trusted_legacy=trusted_legacy), strict=strict, source=path)
