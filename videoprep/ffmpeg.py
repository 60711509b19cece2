"""Find and run the ffmpeg program: PATH first, else the static binary of imageio-ffmpeg."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

from videoprep.errors import FFmpegError, VideoprepError

_STDERR_TAIL_CHARS = 2000


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


def run_ffmpeg(args: Sequence[str], *, target: str, timeout_s: float | None = None) -> None:
    """Run ffmpeg with an argument list (no shell), await it, kill it on timeout or Ctrl-C.

    `target` names the file the error is about. Raises FFmpegError with the
    tail of ffmpeg's stderr when it fails.
    """
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise FFmpegError(target, f"ffmpeg timed out after {timeout_s:g} s") from None
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-_STDERR_TAIL_CHARS:]
        raise FFmpegError(target, f"ffmpeg exited with {proc.returncode}: {tail or 'no message'}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill ffmpeg's whole process group and reap it, so nothing is left running."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
