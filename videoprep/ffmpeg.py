"""Find and run the ffmpeg program: PATH first, else the static binary of imageio-ffmpeg."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from videoprep.errors import FFmpegError, FFmpegTimeoutError, VideoprepError

_STDERR_TAIL_CHARS = 2000
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to run (env VIDEOPREP_FFMPEG overrides)."""
    override = os.environ.get("VIDEOPREP_FFMPEG")
    if override:
        return override
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoprepError(
            "ffmpeg not found: install it (apt-get install ffmpeg) or `pip install imageio-ffmpeg`"
        ) from None
    return imageio_ffmpeg.get_ffmpeg_exe()


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

