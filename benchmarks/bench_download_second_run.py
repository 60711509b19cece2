"""A second `videoprep download` on a complete tree: how long against the first run.

    .venv/bin/python benchmarks/bench_download_second_run.py --clips 20000 --clips-per-part 1000 --rounds 5

Packs `--clips` tiny H.264 clips (two distinct encodes under different clip ids, so the
archives are small and the figures are per-clip overhead) into `.tar.gz` parts, serves
them on 127.0.0.1 and runs the real CLI (`python -m` in a fresh process, as a user does):
once from scratch, then `--rounds` times again on the complete tree, each time both
answered by the completion record and with the record deleted first (the full check
every run did before the record: part list, a HEAD per part, journal, tree scan,
clip selection, report), interleaved. Prints medians and the ratios to the first run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT
from bench_download import make_source

from tests.videoprep.httpfaults import serve_folder
from videoprep.atomic import atomic_write_json
from videoprep.synth import pack_mirror

RECORD = Path(".videoprep-download") / "complete.json"


def timed_download(out: Path, url: str) -> float:
    """Wall seconds of one `videoprep download` process (which must succeed)."""
    cmd = [sys.executable, "-c", "from cli import cli; cli()", "-q", "download", "kinetics400", "--out", str(out),
           "--base-url", url, "--split", "train"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"download failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--clips-per-part", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-download-rerun-") as scratch:
        tmp = Path(scratch)
        make_source(tmp / "src", clips=args.clips, frames=10, size=(64, 48), encodes=2, classes=400)
        with serve_folder(tmp / "mirror") as server:
            packed = pack_mirror(videos_dir=tmp / "src" / "videos", annotations_dir=tmp / "src" / "annotations",
                                 out_dir=tmp / "mirror", base_url=server.url, clips_per_part=args.clips_per_part)
            out = tmp / "out"
            first = timed_download(out, server.url)
            with_record, without = [], []
            for _ in range(args.rounds):  # interleaved
                with_record.append(timed_download(out, server.url))
                (out / RECORD).unlink()
                without.append(timed_download(out, server.url))
        row = {"clips": args.clips, "parts": len(packed.parts["train"]), "first_s": round(first, 3),
               "second_s": round(statistics.median(with_record), 3),
               "second_without_record_s": round(statistics.median(without), 3)}
        row["second_over_first"] = round(row["second_s"] / first, 4)
        row["without_record_over_first"] = round(row["second_without_record_s"] / first, 4)
        print(json.dumps(row), flush=True)
    if args.json:
        atomic_write_json(args.json, {"results": [row]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
