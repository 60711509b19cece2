"""Lintel-compatible decoding with and without seek, and DALI vs PyAV decoding of the same clips.

    .venv/bin/python benchmarks/bench_lintel_dali.py [--videos 4] [--clips 40] [--out bench-out]

Generates 10 s 256p test videos (H.264 GOP 32 with B-frames, VP9, MJPEG), draws the same
8x8 training clips (random starts, `pipelines.sampling`) for every decoder, and reports
clips/s of decoding only (no crops): `pipelines.lintel.loadvid_frame_nums` as BAT calls
it (no seek) and with seek; the PyAV reader; DALI's CPU decoder on VP9/MJPEG. Single
process; figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import VideoSet, generated_videos

from pipelines.backends import get_reader
from pipelines.lintel import loadvid_frame_nums
from pipelines.sampling import clip_indices

ENCODINGS = {
    "h264-gop32": ("mp4", {"codec": "h264", "gop": 32, "bframes": 2}),
    "vp9": ("webm", {"codec": "vp9", "gop": 32}),
    "mjpeg": ("avi", {"codec": "mjpeg"}),
}
FRAMES, WIDTH, HEIGHT = 300, 340, 256


def make_videos(root: Path, *, count: int) -> dict[str, list[Path]]:
    """`count` videos per encoding, 300 frames of 340x256 at 30 fps."""
    return {name: generated_videos(root, VideoSet(name, f".{ext}", options), count=count, frames=FRAMES, width=WIDTH,
                                   height=HEIGHT, fps=30) for name, (ext, options) in ENCODINGS.items()}


def clips_per_second(decode, jobs: list[tuple[Path, list[int]]]) -> float:
    """Decode every (path, indices) job once; clips per second."""
    start = time.perf_counter()
    for path, indices in jobs:
        decode(path, indices)
    return len(jobs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None, help="folder for lintel_dali.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(Path(tmp), count=args.videos)
        for name, paths in videos.items():
            jobs = []
            for k in range(args.clips):
                (clip,) = clip_indices(FRAMES, num_segments=1, seq_length=8, sample_rate=8, mode="train", rng=rng)
                jobs.append((paths[k % len(paths)], sorted(set(clip))))
            encoded = {p: p.read_bytes() for p in paths}
            for seek in (False, True):
                def lintel(path, idx, seek=seek, encoded=encoded):
                    return loadvid_frame_nums(encoded[path], frame_nums=idx, should_seek=seek)
                results[f"{name} lintel seek={seek}"] = clips_per_second(lintel, jobs)
            reader = get_reader("pyav")
            results[f"{name} pyav reader"] = clips_per_second(lambda p, i, r=reader: r.read(str(p), i), jobs)
            if name in ("vp9", "mjpeg"):
                results[f"{name} dali cpu"] = dali_clips_per_second(jobs, encoded)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:7.1f} clips/s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lintel_dali.json").write_text(json.dumps(results, indent=2))


def dali_clips_per_second(jobs: list[tuple[Path, list[int]]], encoded: dict[Path, bytes], batch: int = 8) -> float:
    """DALI's CPU decoder on the same clips, `batch` clips per pipeline run (bytes already in memory)."""
    try:
        from pipelines.dali import DaliSample, build_decode_pipeline, run_decode
        from pipelines.planning import ClipPlan
    except ImportError:
        return float("nan")
    pipe = build_decode_pipeline(None, batch_size=batch, device="cpu", device_id=None, num_threads=1, prefetch=1)
    plans = [DaliSample(ClipPlan(i, str(p), 0, ((tuple(idx),),)), encoded[p]) for i, (p, idx) in enumerate(jobs)]
    run_decode(pipe, plans[:1], device="cpu")  # warm-up
    start = time.perf_counter()
    for k in range(0, len(plans), batch):
        run_decode(pipe, plans[k : k + batch], device="cpu")
    return len(plans) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
