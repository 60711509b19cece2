"""The full loader benchmark (`videoprep bench --generate` with the `make bench` settings).

    .venv/bin/python benchmarks/bench_loaders.py --out bench-out/loaders [--clips 24] [--repeats 3]

Cuts 4 ten-second 340x256 30 fps videos from real camera footage that distribution
packages ship (videoprep.benchsample.REAL_FOOTAGE; --synthetic: lavfi footage with texture
and motion instead), encodes them as `videoprep transcode` would in H.264 GOP 250 and GOP 16, MJPEG (mp4 and
avi), VP9 GOP 16 and 32, JPEG folders, plus the stretch candidates (GOP 16 without
B-frames, -tune fastdecode), and times every backend (the pyav reader also with one
decoder thread), the DataLoader worker sweep, torchcodec exact and approximate and decord
(when they load), the official Lintel usage and the decode limit on the same clips,
interleaved. Writes bench.json, bench.png and
prints the table and the issue's goals. Figures on a shared machine are noisy: compare
rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import _common  # noqa: F401  (puts the checkout on sys.path)
from rich.console import Console

from pipelines.bench import BenchConfig, render_table, run_bench
from pipelines.spec import LoaderConfig

ENCODINGS = ("h264_gop250", "h264_gop16", "h264_gop16_nob", "h264_gop16_fastdecode", "mjpeg", "mjpeg_avi", "vp9",
             "vp9_gop32", "jpeg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/loaders"))
    parser.add_argument("--encodings", default=",".join(ENCODINGS))
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--synthetic", action="store_true", help="synthetic (lavfi) footage instead of real footage")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--views", default="train,val,test")
    parser.add_argument("--loader-views", default="train")
    parser.add_argument("--loader-encodings", default="h264_gop16,h264_gop16_fastdecode,mjpeg,vp9,jpeg",
                        help="file sets with the DataLoader worker sweep (all: every encoding)")
    parser.add_argument("--reference-views", default="train",
                        help="views with decord/torchcodec and the official Lintel usage")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--backends", default="pyav,lintel,frames,dali", help="our backends to measure")
    parser.add_argument("--cpu", type=int, default=None,
                        help="pin the whole run to this one CPU (as `taskset -c N`): the per-core figures")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # threads and DataLoader workers started later inherit it
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = BenchConfig(
        out_dir=args.out, generate=True, sample_synthetic=args.synthetic, sample_videos=args.videos, encodings=tuple(args.encodings.split(",")),
        workers=tuple(int(w) for w in args.workers.split(",")), clips=args.clips, repeats=args.repeats,
        views=tuple(args.views.split(",")), loader_views=tuple(args.loader_views.split(",")),
        loader_encodings=None if args.loader_encodings == "all" else tuple(args.loader_encodings.split(",")),
        reference_views=tuple(args.reference_views.split(",")),
        loader=LoaderConfig(batch_size=args.batch_size), backends=tuple(args.backends.split(",")),
    )
    console = Console(stderr=True, width=140)
    step = {"next": 0}

    def progress(done: int, total: int) -> None:
        if done * 10 >= step["next"] * total:
            console.print(f"bench: {done}/{total} measurements")
            step["next"] += 1

    report = run_bench(config, on_progress=progress)
    console.print(render_table(report))
    for goal in report.goals():
        mark = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        value = "-" if goal["value"] is None else f"{goal['value']:.2f}"
        console.print(f"goal: {goal['goal']}: {value} (target {goal['target']}) {mark}  [{goal['detail']}]")
    for skip in report.skipped:
        console.print(f"skipped {skip['backend']} on {skip['encoding']}: {skip['reason']}")
    for text in sorted({info.get("source", "") for info in report.encodings.values()} - {""}):
        console.print(f"sample: {text}")
    pinned = f" (pinned to cpu {args.cpu})" if args.cpu is not None else ""
    console.print(f"machine: {report.machine['cpu_count']} cpus{pinned} {report.machine['cpu_model']}, "
                  f"load {report.machine['loadavg_start']} -> {report.machine['loadavg_end']}, "
                  f"noisy={report.machine['noisy']}; {report.seconds:.0f} s")
    print(report.json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
