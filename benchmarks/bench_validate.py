"""CPU of `validate`'s quick check against `--full`, per video, on long-GOP and GOP-16 clips.

    .venv/bin/python benchmarks/bench_validate.py --clips 6 --rounds 5 [--against main]

Encodes ten-second 320x240 25 fps H.264 clips the way downloads come (x264 `medium`:
B-frames, 250 or 16 frames per GOP) plus `ultrafast` ones (no B-frames), then times
`check_video` in this process (CPU seconds, `time.process_time`) in interleaved rounds:
quick, full, and with `--against REV` both modes of that git revision's validate.py.
Prints the median CPU ms per video of each and the quick/full ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import ROOT, VideoSet, generated_videos

from videoprep.atomic import atomic_write_json
from videoprep.validate import check_video

KINDS = {  # name -> (frames per GOP, x264 preset)
    "gop250_medium": (250, "medium"),
    "gop16_medium": (16, "medium"),
    "gop250_ultrafast": (250, "ultrafast"),
    "gop16_ultrafast": (16, "ultrafast"),
}


def make_clips(folder: Path, kind: str, count: int) -> list[Path]:
    """`count` different ten-second clips of one kind."""
    gop, preset = KINDS[kind]
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    clips = VideoSet(kind, ".mp4", {"options": {"preset": preset, "x264-params": params}})
    return generated_videos(folder, clips, count=count, frames=250, width=320, height=240, fps=25)


def load_revision(rev: str) -> Callable:
    """check_video of validate as it was at git revision `rev` (for a before/after figure).

    A module (validate.py) or a package (validate/), loaded as `validate_then` beside this tree's videoprep.
    """
    scratch = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    single = subprocess.run(["git", "show", f"{rev}:videoprep/validate.py"], cwd=ROOT, capture_output=True, text=True)
    if single.returncode != 0:  # the package: its own imports renamed to the copy
        tar = subprocess.run(["git", "archive", rev, "videoprep/validate"], cwd=ROOT, check=True,
                             capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(scratch)], input=tar, check=True)
        package = scratch / "validate_then"
        (scratch / "videoprep" / "validate").rename(package)
        for source in package.glob("*.py"):
            source.write_text(source.read_text().replace("videoprep.validate", "validate_then"))
        sys.path.insert(0, str(scratch))
        return importlib.import_module("validate_then").check_video
    path = scratch / "validate_then.py"
    path.write_text(single.stdout.replace("videoprep.h264", "videoprep.decode.h264"))  # where it lives now
    spec = importlib.util.spec_from_file_location("validate_then", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.check_video


def cpu_ms(check: Callable, clips: list[Path], **kwargs) -> float:
    """CPU milliseconds per clip of one pass over `clips`; every clip must pass."""
    started = time.process_time()
    for clip in clips:
        found = check(clip, **kwargs).findings
        assert not found, (clip, found)
    return (time.process_time() - started) * 1000 / len(clips)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=6, help="clips of each kind")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--against", metavar="REV", help="also time the quick check of this git revision")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    variants: dict[str, tuple[Callable, dict]] = {"quick": (check_video, {}), "full": (check_video, {"full": True})}
    if args.against:
        then = load_revision(args.against)
        variants[f"quick@{args.against}"] = (then, {})
        variants[f"full@{args.against}"] = (then, {"full": True})
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as scratch:
        for kind in args.kinds:
            clips = make_clips(Path(scratch), kind, args.clips)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):  # interleaved: every variant once per round
                for name, (check, kwargs) in variants.items():
                    times[name].append(cpu_ms(check, clips, **kwargs))
            row = {"kind": kind, **{f"{n}_cpu_ms": round(statistics.median(t), 2) for n, t in times.items()}}
            row["quick_over_full"] = round(row["quick_cpu_ms"] / row["full_cpu_ms"], 3)
            if args.against:
                row[f"quick_over_quick@{args.against}"] = round(
                    row["quick_cpu_ms"] / row[f"quick@{args.against}_cpu_ms"], 3)
            results.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        atomic_write_json(args.json, {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
