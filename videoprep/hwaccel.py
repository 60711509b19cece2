"""Transcode on an NVIDIA GPU: NVDEC decoding (`--hwaccel cuda`) and NVENC encoding (`--encoder nvenc`).

Pure functions build ffmpeg's arguments; `require_gpu` checks, before any work, that
the ffmpeg the GPU path runs can really decode with NVDEC and encode with NVENC here.

What changes on the GPU path and what does not:
- `-hwaccel cuda` decodes with NVDEC and hands the frames back to system memory, so the
  same `fps` and `scale` filters as on CPU run on them: frame selection, rate and size
  stay exactly the CPU path's (H.264 decoding is exact; x264 outputs differ at most by the
  rounding of scaling NVDEC's nv12 instead of yuv420p).
  A stream NVDEC cannot take (4:2:2, 4:4:4, some codecs) falls back to software decoding
  inside ffmpeg instead of failing; a full-GPU graph (`-hwaccel_output_format cuda`,
  `scale_cuda`) would refuse those, and scale differently from the CPU path.
- `h264_nvenc`: a keyframe (IDR) exactly every `gop` frames, no scene-cut keyframes,
  no B-frames, constant quality (`-cq`, the CRF's value), yuv420p, constant frame rate.
  x264's fastdecode tune becomes CAVLC (no CABAC); NVENC has no other x264 tune.

The GPU path runs the static ffmpeg that imageio-ffmpeg ships (9.0: NVDEC, NVENC and
scale_cuda built in, the same build on every machine), not the `ffmpeg` on PATH (a
distribution's build, Debian's is 5.1, may lack them or be older than the driver
expects). VIDEOPREP_FFMPEG overrides both.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoprep.errors import GpuUnavailableError, VideoprepError

HWACCELS: tuple[str, ...] = ("cuda",)
# --encoder -> ffmpeg encoder, for --codec h264
ENCODERS: dict[str, str] = {"x264": "libx264", "nvenc": "h264_nvenc"}
NVENC_PRESET = "p4"  # NVENC's own default (medium); p1 fastest .. p7 best
NVENC_TUNES: dict[str | None, dict[str, Any]] = {None: {}, "fastdecode": {"coder": "cavlc"}}
PROBE_TIMEOUT_S = 60.0
_PROBE_SOURCE = "testsrc2=size=256x144:rate=25:duration=0.4"


def check_gpu_settings(*, codec: str, hwaccel: str | None, encoder: str, tune: str | None) -> None:
    """Refuse combinations the GPU path cannot encode, naming the option and the fix."""
    if hwaccel is not None and hwaccel not in HWACCELS:
        raise VideoprepError(f"hwaccel {hwaccel!r} is not one of: {', '.join(HWACCELS)}")
    if encoder not in ENCODERS:
        raise VideoprepError(f"encoder {encoder!r} is not one of: {', '.join(ENCODERS)}")
    if encoder == "nvenc" and codec != "h264":
        raise VideoprepError(f"encoder nvenc writes H.264 only: use --codec h264 (not {codec}) or --encoder x264")
    if encoder == "nvenc" and tune not in NVENC_TUNES:
        raise VideoprepError(f"tune ({tune}) is an x264 option NVENC has no match for: use --tune fastdecode or none")


def input_options(hwaccel: str | None) -> dict[str, Any]:
    """ffmpeg input options that decode with `hwaccel` (frames come back to system memory)."""
    return {"hwaccel": hwaccel} if hwaccel else {}


def nvenc_options(*, gop: int, quality: int, tune: str | None) -> dict[str, Any]:
    """h264_nvenc output options: IDR every `gop` frames, no scene cuts, no B-frames, constant quality."""
    return {
        "c:v": ENCODERS["nvenc"], "preset": NVENC_PRESET, "profile:v": "high",
        "rc": "vbr", "cq": quality, "b:v": 0,
        "g": gop, "forced-idr": 1, "no-scenecut": 1, "bf": 0,
        **NVENC_TUNES[tune],
    }


def gpu_ffmpeg_exe() -> str:
    """The ffmpeg the GPU path runs: VIDEOPREP_FFMPEG, else imageio-ffmpeg's static 9.0, else PATH's."""
    override = os.environ.get("VIDEOPREP_FFMPEG")
    if override:
        return override
    try:
        import imageio_ffmpeg
    except ImportError:
        imageio_ffmpeg = None
    if imageio_ffmpeg is not None:
        return imageio_ffmpeg.get_ffmpeg_exe()
    found = shutil.which("ffmpeg")
    if not found:
        raise VideoprepError("ffmpeg not found: `pip install imageio-ffmpeg` (its static build has NVDEC/NVENC)")
    return found


def uses_gpu(*, hwaccel: str | None, encoder: str) -> bool:
    """Whether these settings need the GPU (and so the GPU path's ffmpeg)."""
    return hwaccel is not None or encoder == "nvenc"


# --- availability ---------------------------------------------------------------


def nvidia_devices(dev_dir: str | os.PathLike[str] = "/dev") -> list[str]:
    """The NVIDIA GPU device nodes (`/dev/nvidia0`, ...) present, sorted."""
    root = Path(dev_dir)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.glob("nvidia[0-9]*"))


def nvdec_probe_args(sample: str) -> list[list[str]]:
    """Two ffmpeg runs: write a tiny H.264 file with libx264, then decode it with NVDEC only.

    `-hwaccel_output_format cuda` plus `hwdownload` fails when ffmpeg would fall back to
    software decoding, so the second run succeeds only if NVDEC really decoded.
    """
    return [
        ["-y", "-f", "lavfi", "-i", _PROBE_SOURCE, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", sample],
        ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda", "-i", sample,
         "-vf", "hwdownload,format=nv12", "-f", "null", "-"],
    ]


def nvenc_probe_args() -> list[str]:
    """One ffmpeg run that encodes a tiny clip with h264_nvenc (fails without a usable NVENC)."""
    return ["-f", "lavfi", "-i", _PROBE_SOURCE, "-pix_fmt", "yuv420p", "-c:v", ENCODERS["nvenc"], "-f", "null", "-"]


@dataclass(frozen=True)
class GpuCheck:
    """What one ffmpeg can do on this machine's GPU (`problems` empty: everything asked for works)."""

    ffmpeg: str
    devices: tuple[str, ...]
    hwaccels: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _ffmpeg(exe: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, "-nostdin", "-hide_banner", "-loglevel", "error", *args], capture_output=True,
                          text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)


def first_error(stderr: str) -> str:
    """ffmpeg's first error line (the cause; later lines are consequences), without `[ctx @ 0x..]` tags."""
    for line in stderr.splitlines():
        text = re.sub(r"\[[^\]]* @ 0x[0-9a-f]+\]\s*", "", line).strip()
        if text:
            return text
    return "no message"


def _listing(exe: str, what: str) -> str:
    try:
        return _ffmpeg(exe, [f"-{what}"]).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpuUnavailableError(f"{exe}: cannot run this ffmpeg: {exc}") from None


def check_gpu(*, hwaccel: str | None, encoder: str, exe: str | None = None, dev_dir: str = "/dev") -> GpuCheck:
    """Probe the GPU path: device nodes, ffmpeg's build (hwaccels, encoders), then real NVDEC/NVENC runs."""
    exe = exe or gpu_ffmpeg_exe()
    devices = tuple(nvidia_devices(dev_dir))
    if not devices:
        problem = f"no NVIDIA GPU on this machine (no {Path(dev_dir) / 'nvidia0'})"
        return GpuCheck(exe, devices, (), (problem,))
    hwaccels = tuple(ln.strip() for ln in _listing(exe, "hwaccels").splitlines()[1:] if ln.strip())
    problems: list[str] = []
    if hwaccel and hwaccel not in hwaccels:
        problems.append(f"{exe} has no {hwaccel} hwaccel (it has: {', '.join(hwaccels) or 'none'})")
    if encoder == "nvenc" and f" {ENCODERS['nvenc']} " not in _listing(exe, "encoders"):
        problems.append(f"{exe} has no {ENCODERS['nvenc']} encoder")
    if problems:
        return GpuCheck(exe, devices, hwaccels, tuple(problems))
    if hwaccel:
        with tempfile.TemporaryDirectory(prefix="videoprep-nvdec-") as tmp:
            for args in nvdec_probe_args(str(Path(tmp) / "probe.mp4")):
                run = _ffmpeg(exe, args)
                if run.returncode != 0:
                    problems.append(f"NVDEC decoding with {exe} failed: {first_error(run.stderr)}")
                    break
    if encoder == "nvenc":
        run = _ffmpeg(exe, nvenc_probe_args())
        if run.returncode != 0:
            problems.append(f"NVENC encoding with {exe} failed (H100, H200 and A100 have no NVENC): "
                            f"{first_error(run.stderr)}")
    return GpuCheck(exe, devices, hwaccels, tuple(problems))


@functools.lru_cache(maxsize=8)
def _cached_check(hwaccel: str | None, encoder: str, exe: str) -> GpuCheck:
    return check_gpu(hwaccel=hwaccel, encoder=encoder, exe=exe)


def require_gpu(*, hwaccel: str | None, encoder: str) -> None:
    """Raise GpuUnavailableError (one line, the fix included) unless the GPU path asked for works here."""
    if not uses_gpu(hwaccel=hwaccel, encoder=encoder):
        return
    result = _cached_check(hwaccel, encoder, gpu_ffmpeg_exe())
    if result.ok:
        return
    asked = " ".join(f for f in (f"--hwaccel {hwaccel}" if hwaccel else "",
                                 "--encoder nvenc" if encoder == "nvenc" else "") if f)
    raise GpuUnavailableError(
        f"{asked} cannot run: {'; '.join(result.problems)}. Fix: drop {asked} to transcode on CPU"
        + (", or set VIDEOPREP_FFMPEG to an ffmpeg with NVDEC/NVENC" if result.devices else ""),
    )


def ffmpeg_for(settings: Any) -> str | None:
    """The ffmpeg to run for EncodeSettings `settings`: the GPU path's, or None (the usual one)."""
    return gpu_ffmpeg_exe() if uses_gpu(hwaccel=settings.hwaccel, encoder=settings.encoder) else None
