"""Bytes and time per YouTube clip: range fetches (download_ranges) against the whole-video fetch.

    .venv/bin/python benchmarks/bench_youtube_range.py --duration 180 --size 640x360 --windows 5 --rounds 3

Writes one real H.264/AAC MP4 (moov first, a keyframe every 2 s, as YouTube serves), serves it on
127.0.0.1 with Range support, paced at `--link-mb-s` (unpaced loopback would count whole socket buffers
as sent), and fetches `--windows` 10-s windows through yt-dlp's generic extractor three ways, interleaved,
`--rounds` times: `range` (the route: the section copied from the keyframe before it), `range_keyframes`
(yt-dlp's force_keyframes_at_cuts: re-encoded while read) and `whole` (the video, as before). Counts the body bytes the server sent per clip. Prints medians: bytes per clip, bytes
over the window's share of the file (what a perfect range read would fetch), seconds per clip.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.videoprep.httpfaults import Fault, serve_folder  # noqa: E402
from tests.videoprep.test_download_youtube_range import make_source  # noqa: E402
from videoprep.download.http import RetryPolicy  # noqa: E402
from videoprep.download.ytdlp import fetch_video  # noqa: E402

WINDOW_S = 10


MODES = ("range", "range_keyframes", "whole")


def one_fetch(server, url: str, path: str, work: Path, mode: str, start: int) -> tuple[int, float, int]:
    """(bytes the server sent, wall seconds, bytes of the fetched file) of one fetch."""
    section = None if mode == "whole" else (float(start), float(start + WINDOW_S))
    before = server.bytes_sent[path]
    started = time.perf_counter()
    got = fetch_video(url, work_dir=work, name="clip", policy=RetryPolicy(timeout_s=60), section=section,
                      force_keyframes=mode == "range_keyframes")
    seconds = time.perf_counter() - started
    size = got.stat().st_size
    got.unlink()
    return server.bytes_sent[path] - before, seconds, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=180, help="seconds of the source video")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--noise", type=int, default=6, help="noise strength: 6 gives ~2.8 Mbit/s at 640x360")
    parser.add_argument("--windows", type=int, default=5, help="10-s windows spread over the video")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-mb-s", type=float, default=20.0, help="server pacing in MB/s (0: unpaced)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-yt-range-") as scratch:
        root = Path(scratch)
        video = make_source(root / "www" / "v.mp4", duration_s=args.duration, size=args.size, noise=args.noise)
        file_bytes = video.stat().st_size
        share = file_bytes * WINDOW_S / args.duration
        step = (args.duration - WINDOW_S) / max(1, args.windows)
        starts = [round(i * step + step / 2) for i in range(args.windows)]
        rows: dict[str, list[tuple[int, float, int]]] = {mode: [] for mode in MODES}
        with serve_folder(root / "www") as server:
            if args.link_mb_s:
                server.set_always("v.mp4", Fault("slow", rate_bytes_s=int(args.link_mb_s * 1e6)))
            url = server.url + "/v.mp4"
            for round_no in range(args.rounds):
                for i, start in enumerate(starts):
                    shift = (round_no + i) % len(MODES)  # each mode first, middle and last in turn
                    for mode in MODES[shift:] + MODES[:shift]:
                        rows[mode].append(one_fetch(server, url, "/v.mp4", root / "work" / mode, mode, start))
    figures = {
        "source_bytes": file_bytes, "window_share_bytes": round(share), "duration_s": args.duration, "size": args.size,
        "mbit_s": round(file_bytes * 8 / args.duration / 1e6, 2),
        "link_mb_s": args.link_mb_s, "clips_per_mode": len(rows["range"]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load": os.getloadavg(),
    }
    for mode, got in rows.items():
        figures[mode] = {"bytes_per_clip": statistics.median(b for b, _, _ in got),
                         "over_share": round(statistics.median(b for b, _, _ in got) / share, 2),
                         "seconds_per_clip": round(statistics.median(s for _, s, _ in got), 2),
                         "file_bytes": statistics.median(f for _, _, f in got)}
    for mode in MODES[1:]:
        figures[f"{mode}_over_range_bytes"] = round(
            figures[mode]["bytes_per_clip"] / figures["range"]["bytes_per_clip"], 2)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
