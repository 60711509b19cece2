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


class FFmpegError(PathError):
    """An ffmpeg run that failed; `reason` holds the tail of its stderr."""


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
