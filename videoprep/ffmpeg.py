"""Find and run the one pinned ffmpeg: imageio-ffmpeg's static binary, or the one the user names.

PATH is never searched: two hosts of one job must write the same bytes, and a
system ffmpeg differs from host to host. `VIDEOPREP_FFMPEG` (or a command's
`--ffmpeg`) chooses another binary; its version is recorded wherever outputs are.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from videoprep.errors import FFmpegError, FFmpegTimeoutError, VideoprepError

_STDERR_TAIL_CHARS = 2000
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


ENV_VAR = "VIDEOPREP_FFMPEG"
_VERSION_TIMEOUT_S = 30.0


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to run: env VIDEOPREP_FFMPEG, else imageio-ffmpeg's static one (never PATH)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return override
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoprepError(
            f"the pinned ffmpeg is missing: `pip install imageio-ffmpeg` (or set {ENV_VAR} to an ffmpeg binary)"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class FFmpegBinary:
    """An ffmpeg that answered `-version`: its path and version string (e.g. 'n9.0.2-17-g2a571b6068-20260930')."""

    path: str
    version: str


def parse_version(banner: str) -> str | None:
    """The version of `ffmpeg -version` output ('ffmpeg version 5.1.6-0+deb12u1 Copyright ...' -> '5.1.6-0+deb12u1')."""
    match = re.match(r"\s*ffmpeg version (\S+)", banner)
    return match.group(1) if match else None


@functools.lru_cache(maxsize=8)
def probe_binary(path: str) -> FFmpegBinary:
    """Run `PATH -version`; raise VideoprepError (one line: path, reason, fix) unless it is a working ffmpeg."""
    fix = f"give the path of an ffmpeg program (--ffmpeg or {ENV_VAR}), or leave both unset for the pinned one"
    try:
        proc = subprocess.run([path, "-version"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=_VERSION_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise VideoprepError(f"ffmpeg {path}: `-version` did not answer in {_VERSION_TIMEOUT_S:g} s; {fix}") from None
    except OSError as exc:
        raise VideoprepError(f"ffmpeg {path}: cannot run it ({exc.strerror}); {fix}") from None
    version = parse_version(proc.stdout.decode("utf-8", "replace"))
    if proc.returncode != 0 or version is None:
        raise VideoprepError(f"ffmpeg {path}: not a working ffmpeg (`-version` exited {proc.returncode} "
                             f"without an ffmpeg banner); {fix}")
    return FFmpegBinary(path, version)


def select_ffmpeg(path: str | os.PathLike[str] | None = None) -> FFmpegBinary:
    """The ffmpeg a run uses, checked before any work: `path` if given, else `ffmpeg_exe()`."""
    return probe_binary(os.fspath(path) if path else ffmpeg_exe())


def run_ffmpeg(args: Sequence[str], *, target: str, timeout_s: float | None = None, exe: str | None = None) -> None:
    """Run ffmpeg with an argument list (no shell), await it, kill it on timeout or Ctrl-C.

    `target` names the file the error is about; `exe` replaces `ffmpeg_exe()`. Raises FFmpegError with the
    tail of ffmpeg's stderr when it fails.
    """
    cmd = [exe or ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True, preexec_fn=die_with_parent_hook(),
    )
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise FFmpegTimeoutError(target, f"ffmpeg timed out after {timeout_s:g} s") from None
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-_STDERR_TAIL_CHARS:]
        raise FFmpegError(target, f"ffmpeg exited with {proc.returncode}: {tail or 'no message'}")


@functools.lru_cache(maxsize=4)
def die_with_parent_hook(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A hook that asks the kernel to send `signum` to the calling process when its parent dies.

    Run as Popen's preexec_fn for ffmpeg (SIGKILL) or in a pool worker (SIGTERM).

    ffmpeg runs in its own session (so a terminal's Ctrl-C reaches only us and we
    kill it ourselves); this covers the cases where we cannot: a worker killed by
    its pool (pebble's SIGTERM is an immediate exit), SIGKILL, a Ray worker cancelled.
    Linux only; elsewhere None.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    sig = int(signum)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return hook


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill ffmpeg's whole process group and reap it, so nothing is left running."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ffmpeg-python hashes every argument as UTF-8, which a non-UTF-8 file name (kept by os as
# surrogates) cannot be: graphs are built with these stand-ins, swapped for the real paths after.
SOURCE_STANDIN = "@videoprep-source@"
OUTPUT_STANDIN = "@videoprep-output@"


def with_paths(args: Sequence[str], *, source: str, output: str) -> list[str]:
    """Compiled arguments with the stand-ins replaced by the real source and output paths."""
    return [a.replace(SOURCE_STANDIN, source).replace(OUTPUT_STANDIN, output) for a in args]

