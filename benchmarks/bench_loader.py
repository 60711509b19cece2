"""End-to-end `build_loader` throughput: decode + official train crop + uint8 batches, by backend and workers.

    .venv/bin/python benchmarks/bench_loader.py [--videos 8] [--workers 0 2] [--epochs 2] [--out bench-out]

Generates 10 s 340x256 30 fps videos (H.264 GOP 16 with B-frames, MJPEG, and JPEG frame
folders made from the H.264 decode), writes BAT lists, and reports train clips/s (8x8, one
segment, batch 8) for each backend and worker count, after one warm-up epoch, with one
torch thread in this process. Figures on a
shared 2-core machine are noisy; compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.backends.frames import frame_path  # noqa: E402
from pipelines.loader import build_loader  # noqa: E402
from videoprep.synth import decode_all, write_video  # noqa: E402

FRAMES, WIDTH, HEIGHT = 300, 340, 256
ENCODINGS = {
    "h264-gop16": ("mp4", {"codec": "h264", "gop": 16, "bframes": 2}),
    "mjpeg": ("avi", {"codec": "mjpeg"}),
}


def make_data(root: Path, *, count: int) -> dict[str, tuple[str, Path]]:
    """(backend, list path) per encoding, plus a JPEG-folder list made from the H.264 frames."""
    lists: dict[str, tuple[str, Path]] = {}
    for name, (ext, options) in ENCODINGS.items():
        lines = []
        for i in range(count):
            write_video(root / f"{name}_{i}.{ext}", num_frames=FRAMES, width=WIDTH, height=HEIGHT,
                        fps=30, seed=i, **options)
            lines.append(f"{name}_{i}.{ext} {FRAMES} {i % 4}")
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
        lists[name] = ("pyav", root / f"{name}.txt")
    lines = []
    for i in range(count):
        directory = root / f"frames_{i}"
        directory.mkdir()
        for n, frame in enumerate(decode_all(root / f"h264-gop16_{i}.mp4")):
            Image.fromarray(frame).save(frame_path(directory, n), quality=90)
        lines.append(f"frames_{i} {FRAMES} {i % 4}")
    (root / "frames.txt").write_text("\n".join(lines) + "\n")
    lists["jpeg-frames"] = ("frames", root / "frames.txt")
    return lists


def clips_per_second(backend: str, list_file: Path, *, workers: int, epochs: int) -> float:
    """Train clips/s over `epochs` epochs after one warm-up epoch (workers started, caches warm)."""
    loader = build_loader(list_file, root_path=list_file.parent, mode="train", backend=backend, batch_size=8,
                          workers=workers, num_classes=4, drop_last=False, seed=0)
    loader.set_epoch(0)
    for _ in loader:
        pass
    start, clips = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        loader.set_epoch(epoch)
        for batch, _ in loader:
            clips += batch.shape[0]
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="folder for bench_loader.json")
    args = parser.parse_args()
    # Workers run one torch thread each (worker_init); give workers=0 (decoding in this process)
    # the same, or torch's idle OpenMP threads compete with the decoder for the 2 cores.
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        lists = make_data(Path(tmp), count=args.videos)
        for name, (backend, list_file) in lists.items():
            for workers in args.workers:
                rate = clips_per_second(backend, list_file, workers=workers, epochs=args.epochs)
                results.append({"data": name, "backend": backend, "workers": workers, "clips_per_s": round(rate, 1)})
                print(f"{name:12s} {backend:7s} workers={workers}  {rate:7.1f} clips/s", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_loader.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
