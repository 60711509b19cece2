"""What the integrity check costs beside the probe every stage runs anyway, per container.

    .venv/bin/python benchmarks/bench_integrity.py --seconds 60 --rounds 7

Writes one clip of `--seconds` at 320x240 30 fps with the pinned ffmpeg (imageio-ffmpeg's) in
MP4 (faststart), Matroska, AVI (MPEG-4 Part 2), MPEG-PS (MPEG-2) and MPEG-TS, then times
`check_integrity` and `probe_video` on each in interleaved rounds (wall ms, this process).
Prints the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import imageio_ffmpeg  # noqa: E402

from videoprep.ffmpeg import run_ffmpeg  # noqa: E402
from videoprep.probe import probe_video  # noqa: E402
from videoprep.validate import check_integrity  # noqa: E402

ENCODINGS = {  # file name -> ffmpeg output arguments
    "clip.mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
    "clip.mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "clip.avi": ["-c:v", "mpeg4", "-q:v", "5"],
    "clip.mpg": ["-c:v", "mpeg2video", "-q:v", "5", "-f", "mpeg"],
    "clip.ts": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mpegts"],
}


def ms(fn: Callable[[Path], object], path: Path, repeat: int = 3) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn(path)
    return (time.perf_counter() - started) * 1000 / repeat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as scratch:
        source = ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate=30:duration={args.seconds}"]
        for name, options in ENCODINGS.items():
            target = str(Path(scratch) / name)
            run_ffmpeg(["-y", *source, *options, target], target=target, exe=imageio_ffmpeg.get_ffmpeg_exe())
        for name in ENCODINGS:
            path = Path(scratch) / name
            assert check_integrity(path).intact, name
            checks, probes = [], []
            for _ in range(args.rounds):  # interleaved
                checks.append(ms(check_integrity, path))
                probes.append(ms(probe_video, path))
            check, probe = statistics.median(checks), statistics.median(probes)
            print(json.dumps({"file": name, "bytes": path.stat().st_size, "check_ms": round(check, 2),
                              "probe_ms": round(probe, 1), "check_over_probe": round(check / probe, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
