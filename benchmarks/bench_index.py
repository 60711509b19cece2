"""How fast `videoprep index` probes ten-second 256p videos (goal: >= 300 videos/s on 2 cores).

    .venv/bin/python benchmarks/bench_index.py --videos 600 --jobs 2 --repeats 5

The videos (340x256, 30 fps, 300 frames, H.264) are generated once into the
cache folder and reused; every repeat starts from a fresh journal, so every
video is probed (demuxed) again. Prints the median videos/s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import VideoSet, copies_under, generated_videos

from videoprep.index import IndexConfig, run_index

NUM_CLASSES = 10


def make_dataset(cache: Path, *, videos: int, width: int, height: int, fps: int, seconds: int) -> Path:
    """`cache/train/class_k/vid_i.mp4`: a few distinct encodes, hard-linked to `videos` files."""
    root = cache / f"k{videos}_{width}x{height}_{fps}fps_{seconds}s"
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    # distinct content, so probing is not one cached file; real copies: each probe reads its own file
    sources = generated_videos(root / "_src", VideoSet("seed", ".mp4", {"codec": "h264", "gop": fps}), count=4,
                               frames=fps * seconds, width=width, height=height, fps=fps)
    copies_under(sources, [root / "train" / f"class_{i % NUM_CLASSES:02d}" / f"vid{i:06d}.mp4" for i in range(videos)])
    shutil.rmtree(root / "_src")
    done.write_text("ok\n")
    return root


def _cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videoprep-bench-index")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one run (parent process) and print the top"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    t0 = time.perf_counter()
    root = make_dataset(args.cache, videos=args.videos, width=340, height=256, fps=30, seconds=10)
    print(f"dataset {root} ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rates, cpu_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        config = IndexConfig(video_root=root, out_dir=Path(tmp) / "lists", jobs=args.jobs, fresh=True)
        for rep in range(args.repeats):
            t, cpu = time.perf_counter(), _cpu_seconds()
            result = run_index(config)
            elapsed = time.perf_counter() - t
            assert result.probed == args.videos and result.errors == 0, result
            rates.append(args.videos / elapsed)
            cpu_ms.append((_cpu_seconds() - cpu) / args.videos * 1e3)
            print(
                f"repeat {rep}: {elapsed:.3f} s, {rates[-1]:.0f} videos/s, {cpu_ms[-1]:.2f} ms CPU/video",
                file=sys.stderr,
            )
        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(run_index, config)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    figures = {
        "videos": args.videos,
        "jobs": args.jobs,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "median_videos_per_s": round(statistics.median(rates), 1),
        "min_videos_per_s": round(min(rates), 1),
        "max_videos_per_s": round(max(rates), 1),
        # CPU time (this process + its workers) per video: what the rate would be on idle cores
        # follows from it, even when a shared machine makes wall-clock rates noisy.
        "median_cpu_ms_per_video": round(statistics.median(cpu_ms), 3),
        "idle_cores_videos_per_s": round(args.jobs * 1e3 / statistics.median(cpu_ms), 1),
    }
    print(json.dumps(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
