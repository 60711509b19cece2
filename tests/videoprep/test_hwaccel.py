"""Transcode on a GPU (`--hwaccel cuda`, `--encoder nvenc`): the ffmpeg arguments, the refusals, and real runs on a GPU."""

from __future__ import annotations

from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from videoprep import hwaccel
from videoprep.errors import GpuUnavailableError, VideoprepError
from videoprep.probe import probe_video
from videoprep.synth import decode_all, write_video
from videoprep.transcode import EncodeSettings, TranscodeConfig, run_transcode, stable_digest, transcode_args

HAS_GPU = bool(hwaccel.nvidia_devices())
RATE = Fraction(30000, 1001)
FILTERS = ["-filter_complex", "[0:v]fps=fps=30000/1001[s0];[s0]scale=340:256[s1]", "-map", "[s1]", "-f", "mp4", "-an"]
TAIL = ["-map_metadata", "-1", "-movflags", "+faststart"]
X264 = ["-c:v", "libx264", "-crf", "23", "-fps_mode", "cfr", "-g", "16", *TAIL, "-pix_fmt", "yuv420p",
        "-preset", "veryfast", "-threads", "1", "-tune", "fastdecode",
        "-x264-params", "keyint=16:min-keyint=16:scenecut=0", "out.mp4"]


def _args(**kw) -> list[str]:
    return transcode_args("in.mp4", "out.mp4", settings=EncodeSettings(**kw), rate=RATE, width=340, height=256)


def test_hwaccel_cuda_only_adds_nvdec_decoding_to_the_cpu_arguments():
    cpu = _args()
    assert cpu == ["-y", "-filter_complex_threads", "1", "-threads", "1", "-i", "in.mp4", *FILTERS, *X264]
    assert _args(hwaccel="cuda") == [
        "-y", "-filter_complex_threads", "1", "-hwaccel", "cuda", "-threads", "1", "-i", "in.mp4", *FILTERS, *X264,
    ]


def test_nvenc_arguments_keep_gop_rate_and_pixel_format_without_b_frames():
    assert _args(hwaccel="cuda", encoder="nvenc") == [
        "-y", "-filter_complex_threads", "1", "-hwaccel", "cuda", "-threads", "1", "-i", "in.mp4", *FILTERS,
        "-b:v", "0", "-bf", "0", "-c:v", "h264_nvenc", "-coder", "cavlc", "-cq", "23", "-forced-idr", "1",
        "-fps_mode", "cfr", "-g", "16", *TAIL, "-no-scenecut", "1", "-pix_fmt", "yuv420p", "-preset", "p4",
        "-profile:v", "high", "-rc", "vbr", "-threads", "1", "out.mp4",
    ]
    # CPU decoding into NVENC; no tune -> no CAVLC; --crf and --gop carry over
    assert _args(encoder="nvenc", tune=None, crf=30, gop=8) == [
        "-y", "-filter_complex_threads", "1", "-threads", "1", "-i", "in.mp4", *FILTERS,
        "-b:v", "0", "-bf", "0", "-c:v", "h264_nvenc", "-cq", "30", "-forced-idr", "1",
        "-fps_mode", "cfr", "-g", "8", *TAIL, "-no-scenecut", "1", "-pix_fmt", "yuv420p", "-preset", "p4",
        "-profile:v", "high", "-rc", "vbr", "-threads", "1", "out.mp4",
    ]


def test_probe_arguments_force_nvdec_and_nvenc():
    write, decode = hwaccel.nvdec_probe_args("/tmp/p.mp4")
    src = "testsrc2=size=256x144:rate=25:duration=0.4"
    assert write == ["-y", "-f", "lavfi", "-i", src, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", "/tmp/p.mp4"]
    assert decode == ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda", "-i", "/tmp/p.mp4",
                      "-vf", "hwdownload,format=nv12", "-f", "null", "-"]
    assert hwaccel.nvenc_probe_args() == ["-f", "lavfi", "-i", src, "-pix_fmt", "yuv420p", "-c:v", "h264_nvenc",
                                          "-f", "null", "-"]


@pytest.mark.parametrize(("kw", "message"), [
    ({"codec": "vp9", "encoder": "nvenc"}, r"encoder nvenc writes H.264 only: use --codec h264 \(not vp9\)"),
    ({"encoder": "nvenc", "tune": "film"}, r"tune \(film\) is an x264 option NVENC has no match for"),
    ({"encoder": "qsv"}, r"encoder 'qsv' is not one of: x264, nvenc"),
    ({"hwaccel": "vaapi"}, r"hwaccel 'vaapi' is not one of: cuda"),
])
def test_settings_refuse_what_the_gpu_path_cannot_encode(kw, message):
    with pytest.raises(VideoprepError, match=message):
        EncodeSettings(**kw)


def test_decoding_on_the_gpu_keeps_the_journal_digest_and_nvenc_changes_it():
    cpu = EncodeSettings()
    before = {k: v for k, v in asdict(cpu).items() if k not in ("hwaccel", "encoder")}
    assert cpu.digest() == stable_digest(before)  # outputs made before these fields stay up to date
    assert EncodeSettings(hwaccel="cuda").digest() == cpu.digest()
    assert EncodeSettings(encoder="nvenc").digest() != cpu.digest()


def test_gpu_path_runs_the_static_ffmpeg_unless_overridden(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.delenv("VIDEOPREP_FFMPEG", raising=False)
    assert hwaccel.gpu_ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    assert hwaccel.ffmpeg_for(EncodeSettings()) is None
    assert hwaccel.ffmpeg_for(EncodeSettings(hwaccel="cuda")) == imageio_ffmpeg.get_ffmpeg_exe()
    monkeypatch.setenv("VIDEOPREP_FFMPEG", "/opt/ffmpeg")
    assert hwaccel.ffmpeg_for(EncodeSettings(encoder="nvenc")) == "/opt/ffmpeg"


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: nothing to refuse")
@pytest.mark.parametrize("flags", [["--hwaccel", "cuda"], ["--encoder", "nvenc"], ["--hwaccel", "cuda", "--encoder", "nvenc"]])
def test_cli_refuses_without_a_gpu_in_one_line_before_any_work(tmp_path: Path, flags: list[str]):
    write_video(tmp_path / "src" / "a.mp4", num_frames=10)
    dst = tmp_path / "dst"
    result = CliRunner().invoke(cli, ["transcode", str(tmp_path / "src"), str(dst), *flags])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    asked = " ".join(flags)
    assert lines == [f"Error: {asked} cannot run: no NVIDIA GPU on this machine (no /dev/nvidia0). "
                     f"Fix: drop {asked} to transcode on CPU"]
    assert not dst.exists()  # refused before DST was created


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: the probes would pass")
def test_probes_run_real_ffmpeg_and_name_the_cause(tmp_path: Path):
    """With a GPU device node present but no usable driver, both probes fail with ffmpeg's first error."""
    (tmp_path / "nvidia0").touch()
    result = hwaccel.check_gpu(hwaccel="cuda", encoder="nvenc", dev_dir=str(tmp_path))
    assert not result.ok and "cuda" in result.hwaccels
    nvdec, nvenc = result.problems
    assert nvdec.startswith(f"NVDEC decoding with {result.ffmpeg} failed: ")
    assert nvenc.startswith(f"NVENC encoding with {result.ffmpeg} failed ")
    assert "@ 0x" not in nvdec + nvenc


def test_first_error_drops_context_tags():
    stderr = "[CUDA @ 0x5619b82bb240] Cannot load libcuda.so.1\n[CUDA @ 0x56] Could not dynamically load CUDA\n"
    assert hwaccel.first_error(stderr) == "Cannot load libcuda.so.1"
    assert hwaccel.first_error("\n") == "no message"


# --- on a GPU ------------------------------------------------------------------------------------


def _gpu_or_skip(encoder: str) -> None:
    result = hwaccel.check_gpu(hwaccel="cuda", encoder=encoder)
    if not result.ok:
        pytest.skip("; ".join(result.problems))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU")
def test_nvdec_x264_output_matches_the_cpu_output(tmp_path: Path):
    _gpu_or_skip("x264")
    write_video(tmp_path / "src" / "a.mp4", num_frames=48, width=320, height=240, gop=12, bframes=2)
    outputs = {}
    for name, kw in {"cpu": {}, "gpu": {"hwaccel": "cuda"}}.items():
        result = run_transcode(TranscodeConfig(src=tmp_path / "src", dst=tmp_path / name, jobs=1, index=False,
                                               settings=EncodeSettings(short_side=128, **kw)))
        assert result.ok, result.failures
        outputs[name] = tmp_path / name / "a.mp4"
    cpu, gpu = (decode_all(outputs[n]) for n in ("cpu", "gpu"))
    assert len(cpu) == len(gpu) == 48  # the same frames selected
    diff = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(cpu, gpu, strict=True)])
    assert diff <= 1.0  # H.264 decoding is exact; only nv12 vs yuv420p scaling may round differently


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU")
def test_nvenc_output_passes_the_output_checks(tmp_path: Path):
    _gpu_or_skip("nvenc")
    write_video(tmp_path / "src" / "a.mp4", num_frames=50, width=320, height=240, gop=25)
    settings = EncodeSettings(short_side=128, gop=8, hwaccel="cuda", encoder="nvenc")
    result = run_transcode(TranscodeConfig(src=tmp_path / "src", dst=tmp_path / "dst", jobs=1, index=False,
                                           settings=settings))
    assert result.ok, result.failures  # run_transcode probes and checks every output
    info = probe_video(tmp_path / "dst" / "a.mp4")
    assert (info.frames, info.keyframes, info.max_gop, info.pix_fmt) == (50, 7, 8, "yuv420p")


def test_require_gpu_is_a_no_op_on_the_cpu_path():
    hwaccel.require_gpu(hwaccel=None, encoder="x264")  # no probe, no error
    if not HAS_GPU:
        with pytest.raises(GpuUnavailableError, match="no NVIDIA GPU"):
            hwaccel.require_gpu(hwaccel="cuda", encoder="x264")
