"""Transcode speed: our overhead per video against ffmpeg run by hand, and -j 2 against -j 1.

    .venv/bin/python benchmarks/bench_transcode.py --videos 4 --repeats 5 [--presets] [--json out.json]

Sources are 720p, 30 fps, 10 s H.264 clips (generated once into --cache).
1. Overhead (wall and CPU seconds; CPU time includes every child process and
   is far less disturbed by other load): the exact ffmpeg argument list `videoprep transcode` builds, run by
   hand with subprocess on one file, against `run_transcode` on a folder holding
   only that file (discovery, probing source and output, pool start, journal,
   mapping and report included). Repeats alternate the order; the ratio is of
   the medians, taken in one run. Goal: ours within 5% of by hand.
2. Throughput: `run_transcode` over --videos files with -j 1 and -j 2
   (one ffmpeg thread per video, the default), fresh DST each time. Goal:
   -j 2 >= 1.8x -j 1 on 2 cores.
--presets adds a table of x264 presets (frames per CPU second, output size) for one file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoprep.ffmpeg import ffmpeg_exe  # noqa: E402
from videoprep.probe import probe_video  # noqa: E402
from videoprep.synth import write_video  # noqa: E402
from videoprep.transcode import (  # noqa: E402
    EncodeSettings,
    TranscodeConfig,
    output_rate,
    run_transcode,
    scaled_size,
    transcode_args,
)

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 30, 10


def make_sources(cache: Path, *, videos: int) -> list[Path]:
    """`videos` distinct 720p clips, generated once and reused across runs."""
    folder = cache / f"src_{WIDTH}x{HEIGHT}_{FPS}fps_{SECONDS}s"
    paths = []
    for i in range(videos):
        path = folder / f"clip{i:02d}.mp4"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp.mp4")
            write_video(tmp, num_frames=FPS * SECONDS, width=WIDTH, height=HEIGHT, fps=FPS, codec="h264",
                        gop=250, crf=20, options={"preset": "veryfast"}, seed=i)
            os.replace(tmp, path)
        paths.append(path)
    return paths


def by_hand_command(source: Path, output: Path, settings: EncodeSettings) -> list[str]:
    """What a user would type: the same arguments our stage passes to ffmpeg."""
    info = probe_video(source)
    width, height = scaled_size(info.width, info.height, short_side=settings.short_side)
    args = transcode_args(str(source), str(output), settings=settings, rate=output_rate(settings.fps, info.fps),
                          width=width, height=height)
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]


def cpu_seconds() -> float:
    """CPU time of this process plus every reaped child (ffmpeg, pool workers and their ffmpeg)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def time_by_hand(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ffmpeg run."""
    t, c = time.perf_counter(), cpu_seconds()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t, cpu_seconds() - c


def time_ours(src_dir: Path, work: Path, settings: EncodeSettings, *, jobs: int, expect: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `run_transcode` into a fresh DST."""
    dst = work / "dst"
    shutil.rmtree(dst, ignore_errors=True)
    t, c = time.perf_counter(), cpu_seconds()
    result = run_transcode(TranscodeConfig(src=src_dir, dst=dst, settings=settings, jobs=jobs, index=False))
    elapsed, cpu = time.perf_counter() - t, cpu_seconds() - c
    assert result.ok and result.transcoded == expect, result
    return elapsed, cpu


def bench_overhead(source: Path, work: Path, settings: EncodeSettings, repeats: int) -> dict:
    single = work / "single"
    single.mkdir(parents=True, exist_ok=True)
    link = single / source.name
    if not link.exists():
        os.link(source, link)
    cmd = by_hand_command(source, work / "by_hand.mp4", settings)
    hand: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    time_by_hand(cmd)  # warm the page cache and the binary
    for rep in range(repeats):
        order = [("hand", hand), ("ours", ours)] if rep % 2 == 0 else [("ours", ours), ("hand", hand)]
        for name, into in order:
            into.append(time_by_hand(cmd) if name == "hand" else time_ours(single, work, settings, jobs=1, expect=1))
        print(f"overhead repeat {rep}: by hand {hand[-1][0]:.2f} s wall {hand[-1][1]:.2f} s CPU, "
              f"ours {ours[-1][0]:.2f} s wall {ours[-1][1]:.2f} s CPU", file=sys.stderr)

    def med(rows: list[tuple[float, float]], k: int) -> float:
        return statistics.median(r[k] for r in rows)

    return {
        "command": cmd[1:],
        "by_hand_wall_s": round(med(hand, 0), 3),
        "ours_wall_s": round(med(ours, 0), 3),
        "ours_over_by_hand_wall": round(med(ours, 0) / med(hand, 0), 4),
        "by_hand_cpu_s": round(med(hand, 1), 3),
        "ours_cpu_s": round(med(ours, 1), 3),
        "ours_over_by_hand_cpu": round(med(ours, 1) / med(hand, 1), 4),
        "by_hand_fps": round(FPS * SECONDS / med(hand, 0), 1),
        "all_by_hand": [[round(w, 3), round(c, 3)] for w, c in hand],
        "all_ours": [[round(w, 3), round(c, 3)] for w, c in ours],
    }


def bench_jobs(sources: list[Path], work: Path, settings: EncodeSettings, repeats: int) -> dict:
    many = work / "many"
    many.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if not (many / source.name).exists():
            os.link(source, many / source.name)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for rep in range(repeats):
        for jobs in ((1, 2) if rep % 2 == 0 else (2, 1)):
            elapsed, _ = time_ours(many, work, settings, jobs=jobs, expect=len(sources))
            rates[jobs].append(len(sources) / elapsed)
        print(f"jobs repeat {rep}: -j 1 {rates[1][-1]:.3f} videos/s, -j 2 {rates[2][-1]:.3f} videos/s",
              file=sys.stderr)
    med = {j: statistics.median(r) for j, r in rates.items()}
    return {
        "videos": len(sources),
        "j1_videos_per_s": round(med[1], 3),
        "j2_videos_per_s": round(med[2], 3),
        "j2_over_j1": round(med[2] / med[1], 3),
        "all_j1": [round(x, 3) for x in rates[1]],
        "all_j2": [round(x, 3) for x in rates[2]],
    }


def bench_presets(source: Path, work: Path) -> list[dict]:
    rows = []
    for preset in ("veryfast", "faster", "fast", "medium"):
        settings = EncodeSettings(preset=preset)
        out = work / f"preset_{preset}.mp4"
        _, cpu = time_by_hand(by_hand_command(source, out, settings))
        rows.append({"preset": preset, "fps_per_cpu_second": round(FPS * SECONDS / cpu, 1),
                     "kbytes": round(out.stat().st_size / 1000)})
        print(f"preset {preset}: {rows[-1]}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4, help="files for the -j comparison")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--codec", choices=["h264", "mjpeg", "vp9"], default="h264")
    parser.add_argument("--presets", action="store_true", help="also compare x264 presets on one file")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "videoprep-bench-transcode")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    sources = make_sources(args.cache, videos=max(args.videos, 1))
    print(f"{len(sources)} sources ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    settings = EncodeSettings(codec=args.codec)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        figures = {
            "machine_cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "source": f"{WIDTH}x{HEIGHT} {FPS} fps {SECONDS} s H.264",
            "settings": {"codec": settings.codec, "short_side": settings.short_side, "gop": settings.gop,
                         "preset": settings.preset, "threads": settings.threads},
            "overhead": bench_overhead(sources[0], work, settings, args.repeats),
            "jobs": bench_jobs(sources, work, settings, args.repeats),
        }
        if args.presets:
            figures["presets"] = bench_presets(sources[0], work)
        figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
