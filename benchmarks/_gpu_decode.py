"""GPU proof kit, decoding: DALI (NVDEC and CPU) and torchcodec on CUDA against the pyav reader, and `videoprep bench`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import generated_videos
from _gpu_common import (
    VIDEO_SETS,
    PartFailed,
    Skip,
    clip_plan,
    frame_diff,
    need_cuda_torch,
    need_modules,
    run_limited,
    videoprep_cli,
)

# --- decoders against the pyav reader -----------------------------------------------------------


def pyav_clips(plan: Sequence[tuple[str, list[int]]]) -> tuple[list[np.ndarray], float]:
    """The reference: the pyav reader's frames [T, H, W, 3] per clip, and its clips/s (one process)."""
    from pipelines.backends import get_reader

    reader = get_reader("pyav")
    start = time.perf_counter()
    out = [reader.read(path, indices) for path, indices in plan]
    return out, len(plan) / (time.perf_counter() - start)



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
    sets = {name: generated_videos(work / "videos", VIDEO_SETS[name], count=count, frames=frames) for name in names}
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
        raise Skip(f"torchcodec {torchcodec.__version__} is a CPU build: install a CUDA build to decode on the GPU "
                   "(wheelhouse: make wheelhouse TORCHCODEC_INDEX=https://download.pytorch.org/whl/cu130)")
    return _compare_sets(work, ["h264_gop16", "h264_gop250", "hevc"], torchcodec_decoder, count=8, frames=150)


def part_dali_cpu_vp9(work: Path) -> dict[str, Any]:
    """DALI on CPU (libavcodec; VP8/VP9/MJPEG only) vs the pyav reader on VP9."""
    need_modules("av", "nvidia.dali")
    return _compare_sets(work, ["vp9"], lambda: dali_decoder("cpu", batch_size=4), count=3, frames=90)


def part_torchcodec_cpu(work: Path) -> dict[str, Any]:
    """torchcodec on CPU vs the pyav reader on H.264: its FFmpeg (the wheelhouse's, or the system's) loads and seeks."""
    need_modules("av", "torchcodec")
    figures = _compare_sets(work, ["h264_gop16"], lambda: torchcodec_decoder("cpu"), count=3, frames=90)
    with open("/proc/self/maps", encoding="utf-8") as maps:
        loaded = sorted({line.split()[-1] for line in maps if "/libavcodec.so" in line})
    return figures | {"libavcodec": loaded}



# --- videoprep bench ----------------------------------------------------------------------------


def part_bench_gpu(work: Path) -> dict[str, Any]:
    """`videoprep bench` with the GPU backends (DALI on NVDEC; torchcodec as a peer) next to pyav."""
    need_modules("av", "nvidia.dali")
    need_cuda_torch()
    out = work / "bench"
    run = run_limited(videoprep_cli("-q", "bench", "--generate", "--synthetic", "--encodings", "h264_gop16_fastdecode,h264_gop250",
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


