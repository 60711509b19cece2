"""How fast the mirror route downloads and extracts, against a local 127.0.0.1 mirror.

    .venv/bin/python benchmarks/bench_download.py --clips 200 --clips-per-part 50 --jobs 1 4

Packs `--clips` ten-second 340x256 H.264 clips (four distinct encodes under
different clip ids) into `.tar.gz` parts with pack_mirror, serves them with the
tests' fault-free HTTP server, and times `run_download` from scratch for each
`--jobs` value. Loopback HTTP, so this measures our own overhead (HTTP client,
gzip, extraction, journal), not the network. Prints MB/s of archives and clips/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.videoprep.httpfaults import serve_folder  # noqa: E402
from videoprep.download import DownloadConfig, pack_mirror, run_download  # noqa: E402
from videoprep.synth import write_video  # noqa: E402


def make_source(root: Path, *, clips: int) -> None:
    """`root/videos/train/{clip}.mp4` and `root/annotations/train.csv` with `clips` rows."""
    encodes = [write_video(root / "enc" / f"e{i}.mp4", num_frames=300, width=340, height=256, fps=30, gop=32,
                           seed=i) for i in range(4)]
    rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
    (root / "videos" / "train").mkdir(parents=True)
    for i in range(clips):
        ytid = f"bench{i:06d}"
        shutil.copyfile(encodes[i % 4], root / "videos" / "train" / f"{ytid}_000000_000010.mp4")
        rows.append(f"class {i % 10},{ytid},0,10,train,0")
    (root / "annotations").mkdir()
    (root / "annotations" / "train.csv").write_text("\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--clips-per-part", type=int, default=50)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-download-") as scratch:
        tmp = Path(scratch)
        make_source(tmp / "src", clips=args.clips)
        results = []
        with serve_folder(tmp / "mirror") as server:
            packed = pack_mirror(videos_dir=tmp / "src" / "videos", annotations_dir=tmp / "src" / "annotations",
                                 out_dir=tmp / "mirror", base_url=server.url, clips_per_part=args.clips_per_part)
            archive_bytes = sum(p.stat().st_size for p in packed.parts["train"])
            for jobs in args.jobs:
                out = tmp / f"out-j{jobs}"
                started = time.perf_counter()
                report = run_download(DownloadConfig(out_dir=out, splits=("train",), base_url=server.url, jobs=jobs))
                seconds = time.perf_counter() - started
                assert report.complete, report.as_dict()
                results.append({"jobs": jobs, "seconds": round(seconds, 3), "clips": args.clips,
                                "archive_mb": round(archive_bytes / 1e6, 1),
                                "mb_per_s": round(archive_bytes / 1e6 / seconds, 1),
                                "clips_per_s": round(args.clips / seconds, 1)})
                print(json.dumps(results[-1]), flush=True)
                shutil.rmtree(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
