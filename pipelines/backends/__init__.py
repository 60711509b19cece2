"""Loader backends: one registry by name and what each needs (the reader protocol: pipelines.reader).

A *reader* backend (pyav, lintel, frames, torchcodec) turns (path, frame indices) into RGB
frames inside the torch loader; a *loader* backend (dali) is a whole pipeline that takes the
same ClipSpec and LoaderConfig. Entries name their factory as "module:attribute", imported
on first use, so `pipelines.loader` imports no backend module and optional packages load only
in processes that select them. `backend_status` says, per backend, whether it is usable here,
on which devices, which version, and why not (package missing, FFmpeg libraries missing, no GPU).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

# The decode error types are shared with the Lintel-compatible core, which every
# PyAV-based reader uses: a FrameIndexError means "index past the real end".
from pipelines.reader import VideoReader
from videoprep.decode import DecodeError, FrameIndexError
from videoprep.errors import BackendError

if TYPE_CHECKING:
    from pipelines.spec import LoaderConfig

__all__ = [
    "BACKENDS",
    "READERS",
    "Backend",
    "BackendStatus",
    "DecodeError",
    "FrameIndexError",
    "VideoReader",
    "backend_names",
    "backend_status",
    "decode_device",
    "get_reader",
    "make_reader",
    "plan_indices",
    "reader_names",
    "register_reader",
    "require_backend",
]


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend is usable here, on which devices, its version, and what is missing."""

    name: str
    kind: Literal["reader", "loader"]
    available: bool
    devices: tuple[str, ...] = ()
    version: str = ""
    note: str = ""


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _cuda_note(what: str) -> tuple[tuple[str, ...], str]:
    """(devices, note) of a backend that decodes on CUDA when torch sees a GPU."""
    if torch.cuda.is_available():
        return ("cpu", "cuda"), ""
    return ("cpu",), f"cuda: no GPU ({what})"


def _probe_pyav(name: str, kind: Literal["reader", "loader"]) -> BackendStatus:
    import av

    version = f"av {av.__version__}, FFmpeg {getattr(av, 'ffmpeg_version_info', '?')}"
    note = "frame-exact, on PyAV" + (" (Lintel's API)" if name == "lintel" else "")
    return BackendStatus(name, kind, True, ("cpu",), version, note)


def _probe_frames(name: str, kind: Literal["reader", "loader"]) -> BackendStatus:
    import PIL

    return BackendStatus(name, kind, True, ("cpu",), f"pillow {PIL.__version__}", "JPEG frame folders")


def _probe_torchcodec(name: str, kind: Literal["reader", "loader"]) -> BackendStatus:
    if importlib.util.find_spec("torchcodec") is None:
        return BackendStatus(name, kind, False, note="package missing: pip install 'videoprep[torchcodec]' "
                             "(needs FFmpeg's shared libraries: apt-get install ffmpeg)")
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the FFmpeg libraries)
    except (ImportError, OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return BackendStatus(name, kind, False, version=_dist_version("torchcodec"),
                             note=f"FFmpeg shared libraries missing or incompatible (apt-get install ffmpeg): {first}")
    version = torchcodec.__version__
    if "+cpu" in version:
        return BackendStatus(name, kind, True, ("cpu",), f"torchcodec {version}", "cuda: CPU-only build")
    devices, note = _cuda_note("CUDA decoding needs one")
    return BackendStatus(name, kind, True, devices, f"torchcodec {version}", note)


def _probe_dali(name: str, kind: Literal["reader", "loader"]) -> BackendStatus:
    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
        return BackendStatus(name, kind, False, note="package missing: pip install 'videoprep[dali]'")
    devices, note = _cuda_note("H.264/HEVC/AV1 need NVDEC")
    note = "cpu: VP8/VP9/MJPEG only" + (f"; {note}" if note else "")
    return BackendStatus(name, kind, True, devices, f"nvidia-dali {_dist_version('nvidia-dali-cuda130')}", note)


@dataclass(frozen=True)
class Backend:
    """A registry entry: its factory ("module:attribute" or a callable), kind, probe, and whether it prefers the GPU."""

    name: str
    factory: str | Callable[..., Any]
    kind: Literal["reader", "loader"] = "reader"
    probe: Callable[[str, Literal["reader", "loader"]], BackendStatus] | None = None
    prefers_gpu: bool = False  # device "auto" picks cuda when the backend can decode there

    def status(self) -> BackendStatus:
        """This backend's status on this machine (imports its package when installed)."""
        if self.probe is None:
            return BackendStatus(self.name, self.kind, True, ("cpu",), "", "registered at run time")
        return self.probe(self.name, self.kind)

    def resolve(self) -> Callable[..., Any]:
        """The factory itself (imported on first use)."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module_name), attr)


BACKENDS: dict[str, Backend] = {
    "pyav": Backend("pyav", "pipelines.backends.pyav:PyAVReader", probe=_probe_pyav),
    "lintel": Backend("lintel", "pipelines.backends.lintel:LintelReader", probe=_probe_pyav),
    "frames": Backend("frames", "pipelines.backends.frames:FramesReader", probe=_probe_frames),
    "torchcodec": Backend("torchcodec", "pipelines.backends.torchcodec:TorchCodecReader", probe=_probe_torchcodec),
    "dali": Backend("dali", "pipelines.dali:build_dali_loader", kind="loader", probe=_probe_dali, prefers_gpu=True),
}
# Kept for callers of the reader-only registry: name -> factory of the reader backends.
READERS = BACKENDS


def backend_names() -> list[str]:
    """Registered backend names, sorted."""
    return sorted(BACKENDS)


def reader_names() -> list[str]:
    """Registered per-sample reader names, sorted."""
    return sorted(name for name, b in BACKENDS.items() if b.kind == "reader")


def register_reader(name: str, factory: type | Callable[..., VideoReader] | str) -> None:
    """Add or replace a reader under `name` (a class, a factory, or "module:attribute")."""
    BACKENDS[name] = Backend(name, factory)


def backend_status(name: str | None = None) -> list[BackendStatus]:
    """Status of one backend, or of every registered one (in name order)."""
    names = [name] if name is not None else backend_names()
    return [BACKENDS[n].status() for n in names]


def _why_not(statuses: list[BackendStatus]) -> str:
    usable = [s.name for s in statuses if s.available]
    missing = [f"{s.name} ({s.note})" for s in statuses if not s.available]
    return f"available here: {', '.join(usable) or 'none'}" + (f"; not: {'; '.join(missing)}" if missing else "")


def require_backend(name: str) -> tuple[Backend, BackendStatus]:
    """The entry and status of a usable backend, else BackendError listing what is available and why not."""
    if name not in BACKENDS:
        raise BackendError(f"backend ({name!r}) must be one of: {', '.join(backend_names())}; "
                           f"{_why_not(backend_status())} (see `videoprep backends`)")
    backend = BACKENDS[name]
    status = backend.status()
    if not status.available:
        raise BackendError(f"backend {name!r} is not usable here: {status.note}; "
                           f"{_why_not(backend_status())} (see `videoprep backends`)")
    return backend, status


def decode_device(name: str, requested: str) -> str:
    """Where backend `name` decodes for a requested device ("auto", "cpu", "cuda", "cuda:N")."""
    backend, status = require_backend(name)
    if requested == "auto":
        return "cuda" if backend.prefers_gpu and "cuda" in status.devices else "cpu"
    if requested.startswith("cuda") and "cuda" not in status.devices:
        gpu = [s.name for s in backend_status() if "cuda" in s.devices]
        raise BackendError(f"backend {name!r} cannot decode on {requested} here ({status.note or 'CPU only'}); "
                           f"backends that decode on cuda here: {', '.join(gpu) or 'none'}")
    return requested


def get_reader(name: str, **options: Any) -> VideoReader:
    """A reader instance by registry name; options go to its constructor."""
    backend, _ = require_backend(name)
    if backend.kind != "reader":
        raise BackendError(f"backend {name!r} is a whole loader, not a per-sample reader: use build_loader")
    return backend.resolve()(**options)


def make_reader(config: LoaderConfig) -> VideoReader:
    """The reader a LoaderConfig asks for: its backend object, or the named backend with its options and device."""
    if not isinstance(config.backend, str):
        return config.backend
    options = dict(config.backend_options)
    device = decode_device(config.backend, config.device)
    if device != "cpu":
        options["device"] = device
    return get_reader(config.backend, **options)


def plan_indices(indices: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """(sorted unique indices to decode once, positions that expand them back to `indices`)."""
    if len(indices) == 0:
        raise ValueError("indices is empty: ask for at least one frame")
    wanted = np.asarray(indices, dtype=np.int64)
    if wanted.ndim != 1:
        raise ValueError(f"indices must be a flat sequence, got shape {wanted.shape}")
    if int(wanted.min()) < 0:
        raise ValueError(f"indices must be >= 0, got {int(wanted.min())}")
    unique, inverse = np.unique(wanted, return_inverse=True)
    return [int(i) for i in unique], inverse


def expand(frames: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Frames of the unique indices -> frames in the requested order (no copy when already so)."""
    if len(inverse) == len(frames) and bool(np.all(inverse == np.arange(len(frames)))):
        return frames
    return frames[inverse]
