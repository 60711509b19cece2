"""How fast the mirror route downloads and extracts, against a local 127.0.0.1 mirror.

    .venv/bin/python benchmarks/bench_download.py --clips 200 --clips-per-part 50 --jobs 1 4

Packs `--clips` ten-second 340x256 H.264 clips (four distinct encodes under
different clip ids) into `.tar.gz` parts with pack_mirror, serves them with the
tests' fault-free HTTP server, and times `run_download` from scratch for each
`--jobs` value. Loopback HTTP, so this measures our own overhead (HTTP client,
gzip, extraction, journal), not the network. Prints MB/s of archives and clips/s.

    .venv/bin/python benchmarks/bench_download.py --clips 2000 --clips-per-part 500 --frames 30 --goal --repeats 3

--goal instead times, interleaved, the `videoprep download -j 4` command (its own process) against
`curl -o` + `tar xzf` of the same parts one after another (the goal: at most 1.0x) and
`curl | pigz -dc | tar x` (`gzip -dc` when pigz is absent), plus `run_download` in this process,
and prints the medians, the ratios and the load average at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, VideoSet, copies_under, generated_videos

from tests.videoprep.httpfaults import serve_folder
from videoprep.download import DownloadConfig, run_download
from videoprep.synth import pack_mirror


def make_source(root: Path, *, clips: int, frames: int = 300, size: tuple[int, int] = (340, 256), encodes: int = 4,
                classes: int = 10) -> None:
    """`root/videos/train/{clip}.mp4` and `root/annotations/train.csv` with `clips` rows.

    The clips are copies of `encodes` distinct encodes under different ids (sources are cheap to make).
    """
    width, height = size
    files = generated_videos(root / "enc", VideoSet("e", ".mp4", {"gop": 32}), count=encodes, frames=frames,
                             width=width, height=height, fps=30)
    (root / "videos" / "train").mkdir(parents=True)
    ids = [f"bench{i:06d}" for i in range(clips)]
    copies_under(files, [root / "videos" / "train" / f"{ytid}_000000_000010.mp4" for ytid in ids])
    rows = ["label,youtube_id,time_start,time_end,split,is_cc"]
    rows += [f"class {i % classes},{ytid},0,10,train,0" for i, ytid in enumerate(ids)]
    (root / "annotations").mkdir()
    (root / "annotations" / "train.csv").write_text("\n".join(rows) + "\n")


def by_hand(urls: list[str], out: Path, *, piped: bool) -> float:
    """Seconds for curl + tar of every part, one after another (what a user would type)."""
    out.mkdir(parents=True)
    inflate = "pigz -dc" if shutil.which("pigz") else "gzip -dc"
    started = time.perf_counter()
    for url in urls:
        if piped:
            subprocess.run(f"curl -s {url} | {inflate} | tar x -C {out}", shell=True, check=True)
        else:
            subprocess.run(["curl", "-s", "-o", str(out / "part.tar.gz"), url], check=True)
            subprocess.run(["tar", "xzf", str(out / "part.tar.gz"), "-C", str(out)], check=True)
            (out / "part.tar.gz").unlink()
    return time.perf_counter() - started


def bench_goal(tmp: Path, url: str, urls: list[str], *, repeats: int) -> dict:
    """Medians of ours vs curl + tar xzf vs curl | gzip -dc | tar x, interleaved, rotating the order.

    "ours" is the `videoprep download -j 4` command in its own process (start-up and imports
    included, as curl's and tar's are); "ours_library" is `run_download` called in this process.
    """
    def ours(out: Path) -> float:
        cmd = [sys.executable, "-c", "import cli; cli.main()", "-q", "download", "kinetics400", "--out", str(out),
               "--base-url", url, "--split", "train", "-j", "4"]
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        assert json.loads((out / "download_report.json").read_text())["complete"]
        return seconds

    def ours_library(out: Path) -> float:
        started = time.perf_counter()
        report = run_download(DownloadConfig(out_dir=out, splits=("train",), base_url=url, jobs=4))
        assert report.complete, report.as_dict()
        return time.perf_counter() - started

    steps = {"ours": ours, "ours_library": ours_library,
             "curl_tar_xzf": lambda out: by_hand(urls, out, piped=False),
             "curl_pipe_tar": lambda out: by_hand(urls, out, piped=True)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            out = tmp / f"goal-{name}"
            times[name].append(steps[name](out))
            shutil.rmtree(out)
        print(json.dumps({n: round(v[-1], 3) for n, v in times.items()}), file=sys.stderr, flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    return {"median_s": {n: round(v, 3) for n, v in med.items()},
            "ours_over_curl_tar_xzf": round(med["ours"] / med["curl_tar_xzf"], 3),
            "ours_over_curl_pipe_tar": round(med["ours"] / med["curl_pipe_tar"], 3),
            "inflate_in_pipe": "pigz -dc" if shutil.which("pigz") else "gzip -dc",
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "all_s": {n: [round(x, 3) for x in v] for n, v in times.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--clips-per-part", type=int, default=50)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--goal", action="store_true", help="ours vs curl + tar, interleaved (see above)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (300: 10 s at 30 fps)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-download-") as scratch:
        tmp = Path(scratch)
        make_source(tmp / "src", clips=args.clips, frames=args.frames)
        results = []
        with serve_folder(tmp / "mirror") as server:
            packed = pack_mirror(videos_dir=tmp / "src" / "videos", annotations_dir=tmp / "src" / "annotations",
                                 out_dir=tmp / "mirror", base_url=server.url, clips_per_part=args.clips_per_part)
            archive_bytes = sum(p.stat().st_size for p in packed.parts["train"])
            if args.goal:
                urls = [f"{server.url}/train/{p.name}" for p in packed.parts["train"]]
                results.append({"clips": args.clips, "parts": len(urls), "archive_mb": round(archive_bytes / 1e6, 1),
                                **bench_goal(tmp, server.url, urls, repeats=args.repeats)})
                print(json.dumps(results[-1], indent=2), flush=True)
            for jobs in [] if args.goal else args.jobs:
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
