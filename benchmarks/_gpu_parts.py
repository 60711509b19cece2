"""The parts of the GPU proof kit (`benchmarks/gpu_check.py`): each returns its figures or raises.

A part raises `Skip` when this machine cannot run it (the reason goes into the report),
`PartFailed` when it ran and a check failed (its figures are kept), anything else when
it broke. Every part makes its own generated data under the work folder it is given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIPS_PER_VIDEO = 4
SEQ_LENGTH, SAMPLE_RATE = 8, 8


class Skip(Exception):
    """This machine cannot run the part; the message says why."""


class PartFailed(Exception):
    """The part ran and a check failed; `figures` keeps what it measured."""

    def __init__(self, reason: str, figures: dict[str, Any]) -> None:
        super().__init__(reason)
        self.figures = figures


def need_modules(*names: str) -> None:
    """Skip unless every module is importable, naming the missing ones."""
    import importlib.util

    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise Skip(f"not installed here: {', '.join(missing)} (pip install -e '.[all]')")


def need_cuda_torch() -> None:
    """Skip unless torch sees a CUDA GPU, saying whether torch or the machine is the reason."""
    import torch

    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise Skip(f"torch {torch.__version__} ({build}) sees no CUDA GPU")


def run_limited(cmd: Sequence[str], *, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; past timeout_s SIGTERM (torchrun stops its workers), then SIGKILL.

    The child stays in the part's process group, so the kit's own limit on the part reaches it too.
    """
    proc = subprocess.Popen(list(cmd), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise TimeoutError(f"timed out after {timeout_s:.0f} s: {' '.join(cmd[1:6])} ...") from None
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


# --- generated data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSet:
    """Generated videos of one encoding: how they were written (videoprep.synth.write_video options)."""

    name: str
    suffix: str
    options: dict[str, Any]


VIDEO_SETS: dict[str, VideoSet] = {
    s.name: s for s in (
        # veryfast keeps x264's B-frames (ultrafast has none): DALI and torchcodec must reorder
        VideoSet("h264_gop16", ".mp4", {"codec": "h264", "gop": 16, "options": {"preset": "veryfast"}}),
        VideoSet("h264_gop250", ".mp4", {"codec": "h264", "gop": 250, "options": {"preset": "veryfast"}}),
        VideoSet("hevc", ".mp4", {"codec": "hevc", "gop": 32}),
        VideoSet("vp9", ".webm", {"codec": "vp9", "gop": 16}),
    )
}


def _write_one(args: tuple[str, dict[str, Any]]) -> str:
    from videoprep.synth import write_video

    path, options = args
    return str(write_video(path, **options))


def make_videos(folder: Path, video_set: VideoSet, *, count: int, frames: int, width: int = 340,
                height: int = 256, fps: float = 30) -> list[Path]:
    """`count` generated videos (content changes every frame: a wrong frame shows), made in parallel once."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / f"{video_set.name}_{i:03d}{video_set.suffix}" for i in range(count)]
    todo = [(str(p), {**video_set.options, "num_frames": frames, "width": width, "height": height, "fps": fps,
                      "seed": i}) for i, p in enumerate(wanted) if not p.is_file()]
    if todo:
        with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(_write_one, todo))
    return wanted


def clip_plan(paths: Sequence[Path], *, frames: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """(path, indices) of CLIPS_PER_VIDEO random 8x8 training clips per video, as the loaders draw them."""
    from pipelines.sampling import clip_indices

    rng = np.random.default_rng(seed)
    plan = []
    for path in paths:
        for _ in range(CLIPS_PER_VIDEO):
            (indices,) = clip_indices(frames, num_segments=1, seq_length=SEQ_LENGTH, sample_rate=SAMPLE_RATE,
                                      mode="train", rng=rng)
            plan.append((str(path), [int(i) for i in indices]))
    return plan


# --- decoders against the pyav reader -----------------------------------------------------------


def pyav_clips(plan: Sequence[tuple[str, list[int]]]) -> tuple[list[np.ndarray], float]:
    """The reference: the pyav reader's frames [T, H, W, 3] per clip, and its clips/s (one process)."""
    from pipelines.backends import get_reader

    reader = get_reader("pyav")
    start = time.perf_counter()
    out = [reader.read(path, indices) for path, indices in plan]
    return out, len(plan) / (time.perf_counter() - start)


def frame_diff(test: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> dict[str, float]:
    """Largest and mean absolute difference, and the share of values more than 2 levels apart."""
    worst, total, over, count = 0, 0.0, 0, 0
    for a, b in zip(test, ref, strict=True):
        if a.shape != b.shape:
            raise PartFailed(f"shape {a.shape} differs from the pyav reader's {b.shape}", {})
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        worst = max(worst, int(d.max()))
        total += float(d.sum())
        over += int((d > 2).sum())
        count += d.size
    return {"max_abs_diff": worst, "mean_abs_diff": round(total / count, 3), "share_over_2": round(over / count, 5)}


def matched_share(test: Sequence[np.ndarray], plan: Sequence[tuple[str, list[int]]], *, frames: int) -> float:
    """Share of decoded frames closest to the pyav frame of the same index rather than its neighbours.

    Decoders differ in colour conversion (chroma upsampling, rounding) by several levels on
    average, so a plain tolerance cannot tell a wrong frame; the generated content moves every
    frame, so the right index is always the nearest one.
    """
    from pipelines.backends import get_reader

    reader = get_reader("pyav")
    hits = total = 0
    for got, (path, indices) in zip(test, plan, strict=True):
        dist = {off: np.abs(got.astype(np.int16) - reader.read(path, [min(max(i + off, 0), frames - 1)
                                                                       for i in indices]).astype(np.int16))
                .mean(axis=(1, 2, 3)) for off in (-1, 0, 1)}
        for k, i in enumerate(indices):
            rivals = [dist[off][k] for off in (-1, 1) if 0 <= i + off < frames]
            hits += all(dist[0][k] < r for r in rivals)
            total += 1
    return hits / total


def compare_with_pyav(decode: Callable[[list[tuple[str, list[int]]]], list[np.ndarray]],
                      plan: list[tuple[str, list[int]]], *, frames: int) -> dict[str, Any]:
    """Decode the plan with `decode` (a warm-up pass, then a timed one) and compare with the pyav reader."""
    ref, pyav_rate = pyav_clips(plan)
    decode(plan[: max(1, len(plan) // 4)])  # warm-up: decoder creation, CUDA context, cuDNN-free first call
    start = time.perf_counter()
    got = decode(plan)
    rate = len(plan) / (time.perf_counter() - start)
    figures = {"clips": len(plan), "clips_per_s": round(rate, 1), "pyav_clips_per_s": round(pyav_rate, 1),
               "ratio_to_pyav": round(rate / pyav_rate, 2), **frame_diff(got, ref)}
    figures["same_index_share"] = round(matched_share(got, plan, frames=frames), 4)
    return figures


def dali_decoder(device: str, *, batch_size: int = 8) -> Callable[[list[tuple[str, list[int]]]], list[np.ndarray]]:
    """pipelines.dali's own decode pipeline (fn.decoders.video), fed batches of the plan."""
    from pipelines.dali import DaliSample, build_decode_pipeline, run_decode
    from pipelines.planning import ClipPlan

    pipe = build_decode_pipeline(None, batch_size=batch_size, device=device,
                                 device_id=0 if device == "gpu" else None,
                                 num_threads=min(4, os.cpu_count() or 1), prefetch=1)

    def decode(plan: list[tuple[str, list[int]]]) -> list[np.ndarray]:
        out = []
        for start in range(0, len(plan), batch_size):
            plans = [DaliSample(ClipPlan(start + i, path, 0, ((tuple(idx),),)), Path(path).read_bytes())
                     for i, (path, idx) in enumerate(plan[start : start + batch_size])]
            out += [t.cpu().numpy() for t in run_decode(pipe, plans, device=device)]  # on GPU: feed_ndarray to CUDA
        return out

    return decode


def torchcodec_decoder(device: str = "cuda") -> Callable[[list[tuple[str, list[int]]]], list[np.ndarray]]:
    """torchcodec's VideoDecoder on `device`, one decoder per clip (as a DataLoader's __getitem__ would)."""
    from torchcodec.decoders import VideoDecoder

    def decode(plan: list[tuple[str, list[int]]]) -> list[np.ndarray]:
        out = []
        for path, indices in plan:
            batch = VideoDecoder(path, device=device, dimension_order="NHWC").get_frames_at(indices)
            if batch.data.device.type != device:
                raise PartFailed(f"torchcodec returned frames on {batch.data.device}, not on {device}", {})
            out.append(batch.data.cpu().numpy())
        return out

    return decode


def _compare_sets(work: Path, names: Sequence[str], make_decoder: Callable[[], Callable], *, count: int,
                  frames: int) -> dict[str, Any]:
    """compare_with_pyav on each named video set; PartFailed when any set's frames are not the same."""
    # Every video first: the encoders fork, which must happen before DALI or CUDA start threads.
    sets = {name: make_videos(work / "videos", VIDEO_SETS[name], count=count, frames=frames) for name in names}
    decoder = make_decoder()
    figures: dict[str, Any] = {}
    for name, paths in sets.items():
        figures[name] = compare_with_pyav(decoder, clip_plan(paths, frames=frames), frames=frames)
    wrong = [n for n, f in figures.items() if f["same_index_share"] < 1.0]
    if wrong:
        raise PartFailed(f"wrong frames on {', '.join(wrong)}: some decoded frames are closer to a neighbour "
                         "of the asked index in the pyav reader's decode", figures)
    return figures


def part_dali_gpu(work: Path) -> dict[str, Any]:
    """DALI with NVDEC vs the pyav reader on H.264 GOP 16, GOP 250 and HEVC (same indices)."""
    need_modules("av", "nvidia.dali")
    need_cuda_torch()
    return _compare_sets(work, ["h264_gop16", "h264_gop250", "hevc"], lambda: dali_decoder("gpu"),
                         count=8, frames=150)


def part_torchcodec_cuda(work: Path) -> dict[str, Any]:
    """torchcodec on CUDA vs the pyav reader on the same sets and indices."""
    need_modules("av", "torchcodec")
    need_cuda_torch()
    import torchcodec

    if str(torchcodec.__version__).endswith("+cpu"):
        raise Skip(f"torchcodec {torchcodec.__version__} is a CPU build: install a CUDA build to decode on the GPU")
    return _compare_sets(work, ["h264_gop16", "h264_gop250", "hevc"], torchcodec_decoder, count=8, frames=150)


def part_dali_cpu_vp9(work: Path) -> dict[str, Any]:
    """DALI on CPU (libavcodec; VP8/VP9/MJPEG only) vs the pyav reader on VP9."""
    need_modules("av", "nvidia.dali")
    return _compare_sets(work, ["vp9"], lambda: dali_decoder("cpu", batch_size=4), count=3, frames=90)


# --- transcode ----------------------------------------------------------------------------------


def videoprep_cli(*args: str) -> list[str]:
    """The command line of `videoprep ARGS` with this interpreter (the console script may be elsewhere)."""
    return [sys.executable, "-c", "import cli; cli.main()", *args]


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


# --- pytest -m gpu ------------------------------------------------------------------------------


def part_gpu_tests(work: Path) -> dict[str, Any]:
    """Every `gpu`-marked test of the suite, run with pytest; the failing ones named."""
    need_modules("pytest")
    need_cuda_torch()
    junit = work / "gpu-tests.xml"
    run = run_limited([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                       f"--junitxml={junit}", "tests"], timeout_s=70)
    if not junit.is_file():
        raise RuntimeError(f"pytest wrote no report (exit {run.returncode}): {run.stdout[-400:]}{run.stderr[-400:]}")
    cases = ET.parse(junit).getroot().iter("testcase")
    figures: dict[str, Any] = {"passed": [], "failed": [], "skipped": []}
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            figures["failed"].append(name)
        elif case.find("skipped") is not None:
            figures["skipped"].append(f"{name}: {case.find('skipped').get('message', '')}")
        else:
            figures["passed"].append(name)
    figures["summary"] = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    if figures["failed"] or run.returncode not in (0, 5):
        raise PartFailed(f"{len(figures['failed'])} gpu test(s) failed: {', '.join(figures['failed'])}", figures)
    return figures


# --- training throughput ------------------------------------------------------------------------

TRAIN_PRESET = "c2d_3dbat"
TRAIN_BATCH = 16
TRAIN_EPOCHS = 3  # epoch 0 warms up (cuDNN autotuning, worker start); epochs 1.. are measured
TRAIN_RUN_LIMIT_S = 45.0


def _train_lists(work: Path, *, train_videos: int, val_videos: int) -> tuple[Path, Path]:
    """BAT lists over generated 340x256 H.264 GOP 16 clips of 10 s (what `videoprep transcode` writes)."""
    from videoprep.records import ListRecord, write_list

    frames = 300
    spec = VideoSet("train", ".mp4", {"codec": "h264", "gop": 16, "options": {"tune": "fastdecode",
                                                                          "preset": "veryfast"}})
    paths = make_videos(work / "train-videos", spec, count=train_videos + val_videos, frames=frames)
    rng = np.random.default_rng(0)
    records = [ListRecord(str(p), frames, int(rng.integers(0, 10))) for p in paths]
    train, val = work / "train-videos" / "train.txt", work / "train-videos" / "val.txt"
    write_list(train, records[:train_videos])
    write_list(val, records[train_videos:])
    return train, val


def epoch_figures(log_dir: Path) -> dict[str, Any]:
    """clips/s and data-wait fraction of the measured epochs, from the run's metrics.jsonl."""
    from train.logging_utils import read_metrics

    records = read_metrics(log_dir)
    epochs = [r for r in records if r.get("kind") == "epoch" and r.get("epoch", 0) >= 1]
    if not epochs:
        raise RuntimeError(f"no epoch records in {log_dir}/metrics.jsonl")
    waits = []
    for e in epochs:
        steps = [r for r in records if r.get("kind") == "train" and r.get("epoch") == e["epoch"]]
        last = steps[-1] if steps else {}
        if "data_wait_fraction" in e or "data_wait_fraction" in last:  # the runner's own figure, when it logs one
            waits.append(float(e.get("data_wait_fraction", last.get("data_wait_fraction"))))
        elif last.get("batch_time"):  # else: mean data time / mean step time over the epoch
            waits.append(last["data_time"] / last["batch_time"])
    return {"clips_per_s": round(median(e["clips_per_s"] for e in epochs), 2),
            "epochs": [round(e["clips_per_s"], 2) for e in epochs],
            "data_wait_fraction": round(median(waits), 3) if waits else None}


def train_command(setup: str, train: Path, val: Path, out: Path, *, workers: int) -> list[str]:
    """The command of one training setup: the official one (single process, fp32, Lintel semantics) or ours."""
    from train.config import PRESETS

    flags = [str(train), str(val), *PRESETS[TRAIN_PRESET], "-b", str(TRAIN_BATCH), "--epochs", str(TRAIN_EPOCHS),
             "--lr_steps", "1000", "-ef", "1000", "-sf", "1000", "-p", "1", "-j", str(workers), "--device", "cuda",
             "--log_dir", str(out / "log"), "--snapshot_dir", str(out / "ckpt"), "--seed", "0", "--progress", "off"]
    if setup == "official":
        return [sys.executable, "-m", "train.main", *flags, "--amp", "off"]  # --read_mode video: Lintel semantics
    backend = setup.removeprefix("ours_")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    return [*torchrun, "-m", "train.main", *flags, "--amp", "bf16", "--channels-last", "--backend", backend]


NOTES = {
    "official": "fp32, one process (nn.DataParallel over one GPU calls the module directly), --read_mode video: "
                "the Lintel loader's semantics",
    "ours_pyav": "torchrun with one process (DDP), AMP bf16, channels-last, pyav loader",
    "ours_dali": "torchrun with one process (DDP), AMP bf16, channels-last, DALI loader (NVDEC)",
}


def synthetic_clips_per_s(mode: str) -> float:
    """benchmarks/bench_train.py's step on uint8 clips already on the GPU: the model's upper bound."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from bench_train import measure

    torch.backends.cudnn.benchmark = True
    return measure(TRAIN_PRESET, mode, device=torch.device("cuda"), batch=TRAIN_BATCH, steps=10, warmup=3, size=224,
                   frames=SEQ_LENGTH)


def part_train_throughput(work: Path) -> dict[str, Any]:
    """c2d_resnet50 3-D BAT, 8x8 clips, 224 px, batch 16: clips/s per GPU, official setup vs ours."""
    need_modules("av")
    need_cuda_torch()
    workers = max(1, (os.cpu_count() or 2) - 2)
    train, val = _train_lists(work, train_videos=8 * TRAIN_BATCH, val_videos=TRAIN_BATCH)
    figures: dict[str, Any] = {"preset": TRAIN_PRESET, "batch": TRAIN_BATCH, "workers": workers,
                               "videos": 8 * TRAIN_BATCH, "epochs_measured": TRAIN_EPOCHS - 1}
    for mode in ("official", "ours"):
        figures[f"synthetic_{mode}"] = {"clips_per_s": round(synthetic_clips_per_s(mode), 2)}
    errors = {}
    setups = ["official", "ours_pyav"] + (["ours_dali"] if _has("nvidia.dali") else [])
    for setup in setups:
        out = work / setup
        shutil.rmtree(out, ignore_errors=True)
        cmd = train_command(setup, train, val, out, workers=workers)
        figures[setup] = {"command": " ".join(cmd[1:]), "note": NOTES[setup]}
        try:
            run = run_limited(cmd, timeout_s=TRAIN_RUN_LIMIT_S)
        except TimeoutError as exc:
            errors[setup] = str(exc)
            continue
        if run.returncode != 0:
            errors[setup] = (run.stderr.strip() or run.stdout.strip())[-600:]
            continue
        figures[setup].update(epoch_figures(out / "log"))
    ours = [figures[s]["clips_per_s"] for s in setups[1:] if "clips_per_s" in figures[s]]
    if ours and "clips_per_s" in figures["official"]:
        figures["speedup_ours_over_official"] = round(max(ours) / figures["official"]["clips_per_s"], 2)
        figures["goal_2x_met"] = figures["speedup_ours_over_official"] >= 2.0
    if errors:
        raise PartFailed("; ".join(f"{s}: {e.splitlines()[-1] if e else 'failed'}" for s, e in errors.items()),
                         {**figures, "errors": errors})  # the full tails are in figures["errors"]
    return figures


def _has(module: str) -> bool:
    try:
        need_modules(module)
    except Skip:
        return False
    return True


# --- videoprep bench ----------------------------------------------------------------------------


def part_bench_gpu(work: Path) -> dict[str, Any]:
    """`videoprep bench` with the GPU backends (DALI on NVDEC; torchcodec as a peer) next to pyav."""
    need_modules("av", "nvidia.dali")
    need_cuda_torch()
    out = work / "bench"
    # --synthetic: the GPU machine reaches no package registry for the real footage
    run = run_limited(videoprep_cli("-q", "bench", "--generate", "--synthetic", "--encodings",
                                    "h264_gop16_fastdecode,h264_gop250",
                                    "--backends", "pyav,dali", "--workers", "0,4", "--views", "train",
                                    "--clips", "32", "--repeats", "2", "--sample-videos", "4",
                                    "--sample-seconds", "5", "--out", str(out)), timeout_s=55)
    if run.returncode != 0 or not (out / "bench.json").is_file():
        raise RuntimeError(f"videoprep bench exited {run.returncode}: {run.stderr.strip()[-600:]}")
    data = json.loads((out / "bench.json").read_text())
    rows = [{k: r[k] for k in ("encoding", "kind", "backend", "workers", "status")}
            | {"clips_per_s": r["clips_per_s"]["median"]} for r in data["results"]]
    figures = {"results": rows, "skipped": data["skipped"], "command": "videoprep " + " ".join(run.args[3:])}
    if not any(r["backend"] == "dali" and r["clips_per_s"] for r in rows):
        raise PartFailed("the bench measured no DALI (GPU) figure; see skipped", figures)
    return figures


PARTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "gpu_tests": part_gpu_tests,
    "dali_gpu": part_dali_gpu,
    "torchcodec_cuda": part_torchcodec_cuda,
    "transcode_gpu": part_transcode_gpu,
    "train_throughput": part_train_throughput,
    "bench_gpu": part_bench_gpu,
    "transcode_args": part_transcode_args,
    "refusals": part_refusals,
    "dali_cpu_vp9": part_dali_cpu_vp9,
}
