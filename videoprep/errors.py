"""Exception types of the toolkit; the CLI turns them into one-line messages."""

from __future__ import annotations

from os import PathLike


class VideoprepError(Exception):
    """Base of every error the toolkit raises on purpose (bad input, failed tool)."""


class PathError(VideoprepError):
    """An error about one file or folder: carries the path and the reason."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # type: ignore[override]
        """Pickle by (path, reason), so the error crosses from worker processes intact."""
        return self.__class__, (self.path, self.reason)


class ListFormatError(PathError):
    """A list file line that breaks the `path frame_num label` format."""

    def __init__(self, path: str | PathLike[str], line_no: int, reason: str) -> None:
        self.line_no = line_no
        super().__init__(f"{path}:{line_no}", reason)
        self.path = str(path)

    def __reduce__(self):  # type: ignore[override]
        return self.__class__, (self.path, self.line_no, self.reason)


class ProbeError(PathError):
    """A video that cannot be opened or demuxed."""


class NoVideoStreamError(ProbeError):
    """A file that opens but holds no video stream (audio only, subtitles, data)."""


class IntegrityError(PathError):
    """A file that the integrity check refuses, from its container's own structure."""


class TruncatedError(IntegrityError):
    """A file cut short: its container declares more than the file holds (a download or copy that stopped)."""


class DamagedError(IntegrityError):
    """A file whose container structure cannot be read on (a box or element size, a lost stream sync)."""


class FFmpegError(PathError):
    """An ffmpeg run that failed; `reason` holds the tail of its stderr."""


class TimedOutError(VideoprepError):
    """An item or a tool that ran past its time limit."""


class WorkerDiedError(VideoprepError):
    """A worker process (or a Ray worker or node) that died while it held an item."""


class FFmpegTimeoutError(TimedOutError, FFmpegError):
    """An ffmpeg run killed at its time limit."""


class LayoutError(PathError):
    """A dataset folder or annotation file that does not match a known layout."""


class BackendError(VideoprepError, ValueError):
    """A loader backend that is unknown, or not usable here (package, FFmpeg libraries or GPU missing)."""


class OutputLocationError(PathError):
    """An output location that cannot be used (not creatable, not a folder, read-only, inside the source).

    Raised before any work starts; the CLI exits 2 with the one line.
    """


class OptionError(VideoprepError):
    """A bad option value (or option combination) found before any work; the CLI exits 2 with the one line."""


class EmptySourceError(PathError):
    """A source folder with no video in it: every stage refuses it the same way."""


class GpuUnavailableError(VideoprepError):
    """A GPU path (NVDEC, NVENC) asked for on a machine or ffmpeg that cannot run it."""


# The one table from failure types to the reason classes that reports count (summary-json's `failed`).
# Keyed by class name, so that types this package does not import (Ray's) have a row too.
FAILURE_REASONS: dict[str, str] = {
    "TimedOutError": "timeout",
    "WorkerDiedError": "worker_died",
    "WorkerCrashedError": "worker_died",  # ray.exceptions
    "NodeDiedError": "worker_died",  # ray.exceptions
    "TruncatedError": "truncated",
    "DamagedError": "damaged",
    "FFmpegError": "ffmpeg",
    "ProbeError": "unreadable",
    "OutputCheckError": "output_check",
    "UnicodeError": "bad_name",
}


def failure_reason(exc: BaseException) -> str:
    """The reason class of a failure: the row of its type, or of its nearest base type; 'error' when none."""
    for cls in type(exc).__mro__:
        if cls.__name__ in FAILURE_REASONS:
            return FAILURE_REASONS[cls.__name__]
    return "error"
