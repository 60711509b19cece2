"""GPU proof kit, transcoding: the ffmpeg arguments of each path, the refusals without a GPU, NVDEC/NVENC vs CPU."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any

from _gpu_common import PartFailed, Skip, frame_diff, need_modules, run_limited, videoprep_cli


def part_transcode_args(work: Path) -> dict[str, Any]:
    """The ffmpeg arguments each transcode path builds, and the rules they must keep."""
    from fractions import Fraction

    from videoprep import hwaccel
    from videoprep.transcode import EncodeSettings, transcode_args

    paths = {"cpu": {}, "nvdec_x264": {"hwaccel": "cuda"}, "nvdec_nvenc": {"hwaccel": "cuda", "encoder": "nvenc"}}
    built = {name: transcode_args("in.mp4", "out.mp4", settings=EncodeSettings(**kw), rate=Fraction(30000, 1001),
                                  width=340, height=256) for name, kw in paths.items()}
    problems = []
    cpu, x264, nvenc = built["cpu"], built["nvdec_x264"], built["nvdec_nvenc"]
    if x264[: x264.index("-i")] != [*cpu[: cpu.index("-i")][:3], "-hwaccel", "cuda", *cpu[3 : cpu.index("-i")]]:
        problems.append("--hwaccel cuda must add only `-hwaccel cuda` before the input")
    if x264[x264.index("-i"):] != cpu[cpu.index("-i"):]:
        problems.append("--hwaccel cuda must leave filters and encoder options unchanged")
    graph = cpu[cpu.index("-filter_complex") + 1]
    for flag, value in (("-filter_complex", graph), ("-bf", "0"), ("-g", "16"), ("-pix_fmt", "yuv420p"),
                        ("-fps_mode", "cfr"), ("-c:v", "h264_nvenc"), ("-forced-idr", "1"), ("-no-scenecut", "1")):
        if flag not in nvenc or nvenc[nvenc.index(flag) + 1] != value:
            problems.append(f"nvenc arguments need {flag} {value}")
    figures = {"arguments": {k: " ".join(v) for k, v in built.items()},
               "nvdec_probe": [" ".join(a) for a in hwaccel.nvdec_probe_args("probe.mp4")],
               "nvenc_probe": " ".join(hwaccel.nvenc_probe_args()), "gpu_ffmpeg": hwaccel.gpu_ffmpeg_exe()}
    if problems:
        raise PartFailed("; ".join(problems), figures)
    return figures


def part_refusals(work: Path) -> dict[str, Any]:
    """What the GPU paths say on this machine: the NVDEC/NVENC probes, and the one-line refusals without a GPU."""
    from videoprep import hwaccel
    from videoprep.synth import write_video

    figures: dict[str, Any] = {}
    for encoder in ("x264", "nvenc"):
        check = hwaccel.check_gpu(hwaccel="cuda", encoder=encoder)
        figures[f"probe_cuda_{encoder}"] = {"ok": check.ok, "problems": list(check.problems), "ffmpeg": check.ffmpeg}
    if hwaccel.nvidia_devices():
        figures["refusal"] = "not tried: this machine has an NVIDIA GPU"
        return figures
    write_video(work / "src" / "a.mp4", num_frames=10)
    problems = []
    for flags in (["--hwaccel", "cuda"], ["--encoder", "nvenc"]):
        dst = work / f"dst{len(figures)}"
        start = time.perf_counter()
        run = run_limited(videoprep_cli("transcode", str(work / "src"), str(dst), *flags), timeout_s=60)
        lines = run.stderr.strip().splitlines()
        figures[" ".join(flags)] = {"exit": run.returncode, "stderr": run.stderr.strip(),
                                    "seconds": round(time.perf_counter() - start, 2)}
        if run.returncode != 1 or len(lines) != 1 or "no NVIDIA GPU" not in lines[0] or dst.exists():
            problems.append(f"{' '.join(flags)}: expected one line, exit 1 and no DST; got exit {run.returncode}")
    if problems:
        raise PartFailed("; ".join(problems), figures)
    return figures


def make_transcode_sources(folder: Path, *, count: int, seconds: float) -> list[Path]:
    """`count` 1280x720 30 fps H.264 sources (sparse keyframes, like downloads), encoded by ffmpeg in parallel."""
    from videoprep.ffmpeg import run_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"src{i:02d}.mp4" for i in range(count)]

    def one(i: int) -> None:
        if not paths[i].is_file():
            run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30,noise=alls=4:allf=t:all_seed={i}",
                        "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "veryfast", "-g", "250",
                        "-pix_fmt", "yuv420p", str(paths[i])], target=str(paths[i]))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, range(count)))
    return paths


def _transcode_error(dst: Path, stderr: str) -> str:
    """The first video's error from DST/transcode_report.json, else the tail of stderr."""
    report = dst / "transcode_report.json"
    if report.is_file():
        failures = json.loads(report.read_text()).get("failures") or []
        if failures:
            return f"{len(failures)} failed, first: {failures[0]['source']}: {failures[0]['error'][-400:]}"
    return stderr.strip()[-600:] or "failed without a message"


MAX_TRANSCODE_DIFF = 1.0  # mean levels: NVDEC hands over nv12 where the CPU decoder gives yuv420p; scaling may round


TRANSCODE_PATHS: dict[str, list[str]] = {
    "cpu": [], "nvdec_x264": ["--hwaccel", "cuda"], "nvdec_nvenc": ["--hwaccel", "cuda", "--encoder", "nvenc"],
}


def interleaved_transcodes(work: Path, src: Path, names: Sequence[str], *, rounds: int,
                           count: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """videos/s of each transcode path, paths interleaved within each round; a path that fails stops there."""
    runs: dict[str, list[float]] = {n: [] for n in names}
    errors: dict[str, str] = {}
    for r in range(rounds):
        for name in list(runs):
            dst = work / f"out-{name}-{r}"
            shutil.rmtree(dst, ignore_errors=True)
            start = time.perf_counter()
            run = run_limited(videoprep_cli("-q", "transcode", str(src), str(dst), "--no-index",
                                            *TRANSCODE_PATHS[name]), timeout_s=60)
            if run.returncode != 0:  # transcode checks every output: a wrong GOP, rate or format fails here
                errors[name] = _transcode_error(dst, run.stderr)
                del runs[name]
                continue
            runs[name].append(count / (time.perf_counter() - start))
    return runs, errors


def part_transcode_gpu(work: Path, *, rounds: int = 2, count: int = 32) -> dict[str, Any]:
    """`videoprep transcode` on CPU, with NVDEC + x264 and NVDEC + NVENC: videos/s, interleaved rounds."""
    need_modules("av")
    from videoprep import hwaccel
    from videoprep.synth import decode_all

    if not hwaccel.nvidia_devices():
        raise Skip("no NVIDIA GPU (no /dev/nvidia0)")
    src = work / "sources"
    make_transcode_sources(src, count=count, seconds=4)
    usable = {"cpu": None}
    for name, flags in TRANSCODE_PATHS.items():
        if flags:
            check = hwaccel.check_gpu(hwaccel="cuda", encoder="nvenc" if "nvenc" in flags else "x264")
            usable[name] = None if check.ok else "; ".join(check.problems)
    runs, errors = interleaved_transcodes(work, src, [n for n, why in usable.items() if why is None],
                                          rounds=rounds, count=count)
    # NVDEC is on every NVIDIA GPU, so its probe failing is a finding; NVENC is absent on H100/H200/A100.
    if usable["nvdec_x264"]:
        errors["nvdec_x264"] = usable["nvdec_x264"]
    figures: dict[str, Any] = {"videos": count, "source": "1280x720 H.264, 4 s at 30 fps", "rounds": rounds,
                               "skipped": {n: why for n, why in usable.items() if why and n not in errors},
                               "errors": errors}
    cpu_rate = median(runs["cpu"]) if runs.get("cpu") else None
    for name, rates in runs.items():
        figures[name] = {"videos_per_s": round(median(rates), 2), "runs": [round(x, 2) for x in rates],
                         "ratio_to_cpu": round(median(rates) / cpu_rate, 2) if cpu_rate else None,
                         "bytes_per_video": sum(p.stat().st_size for p in (work / f"out-{name}-0").rglob("*.mp4"))
                         // count}
    if "nvdec_x264" in runs and "cpu" in runs:  # H.264 decoding is exact: x264 gets the CPU path's frames
        a, b = (decode_all(work / f"out-{n}-0" / "src00.mp4") for n in ("cpu", "nvdec_x264"))
        diff = frame_diff(b, a) if len(a) == len(b) else None
        figures["nvdec_x264_vs_cpu_output"] = diff or f"{len(b)} frames vs {len(a)} on CPU"
        if diff is None or diff["mean_abs_diff"] > MAX_TRANSCODE_DIFF:
            errors["nvdec_x264"] = f"its output differs from the CPU output: {figures['nvdec_x264_vs_cpu_output']}"
    if errors:
        raise PartFailed("; ".join(f"{n}: {e}" for n, e in errors.items()), figures)
    return figures


