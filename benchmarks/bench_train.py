"""Training throughput (clips/s per GPU) of the README configurations: official setup vs ours.

    .venv/bin/python benchmarks/bench_train.py [--presets c2d c2d_3dbat] [--batch 8] [--steps 20] [--out bench-out/bench_train]
    .venv/bin/python benchmarks/bench_train.py --cpu-smoke     # tiny CPU figure; proves the script runs

"official": fp32, contiguous, nn.DataParallel around the model, as the official main.py.
"ours": --amp bf16 --channels-last, the model unwrapped (what each DDP process runs).
Both: one full SGD step per batch (forward, loss, backward, clip 20, step) on synthetic
uint8 8x8 clips already on the GPU, so the figure is the model's, not the loader's.
Needs a CUDA GPU; without one it says so and exits 0 (unless --cpu-smoke).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import _common  # noqa: F401  (puts the checkout on sys.path)
import torch
from torch import nn

from train.config import PRESETS, parse_train_args
from train.engine import StepOptions, video_logits
from train.models import build_model
from train.optim import build_optimizer
from videoprep.atomic import atomic_write_json

MODES = {
    "official": {"amp": "off", "channels_last": False, "data_parallel": True},
    "ours": {"amp": "bf16", "channels_last": True, "data_parallel": False},
}


def measure(preset: str, mode: str, *, device: torch.device, batch: int, steps: int, warmup: int, size: int,
            frames: int, arch: str | None = None) -> float:
    """Clips per second of full training steps for one preset in one mode."""
    cfg = parse_train_args(["-", "-", *PRESETS[preset], "--seq_length", str(frames)])
    settings = MODES[mode]
    model = build_model(arch or cfg.arch, **cfg.model_kwargs()).to(device)
    if settings["channels_last"]:
        model.to(memory_format=torch.channels_last_3d)
    optimizer = build_optimizer(model, lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=False)
    runner: nn.Module = nn.DataParallel(model) if settings["data_parallel"] and device.type == "cuda" else model
    opts = StepOptions(device=device, amp=settings["amp"], channels_last=settings["channels_last"])
    clips = torch.randint(0, 256, (batch, 1, 3, frames, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 400, (batch,), device=device)
    criterion = nn.CrossEntropyLoss()
    runner.train()

    def step() -> None:
        loss = criterion(video_logits(runner, clips, opts).mean(dim=1), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=None,
                        help="default: all seven (GPU), c2d and c2d_3dbat (--cpu-smoke)")
    parser.add_argument("--batch", type=int, default=8, help="clips per GPU (README: 64 over 8 GPUs)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench-out/bench_train"))
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="no GPU: time c2d_resnet18/i3d_resnet18 with 2 clips of 8x112x112 on CPU (not a README figure)")
    args = parser.parse_args(argv)

    if torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        gpu = torch.cuda.get_device_name(0)
        shape = {"size": 224, "frames": 8, "batch": args.batch, "steps": args.steps, "warmup": args.warmup}
        arch_override = None
    elif args.cpu_smoke:
        device, gpu = torch.device("cpu"), None
        shape = {"size": 112, "frames": 8, "batch": 2, "steps": 2, "warmup": 1}  # BAT needs >= 112 px
        arch_override = "smoke"
    else:
        print("bench_train: skipped, no CUDA GPU (this benchmark measures clips/s per GPU; "
              "--cpu-smoke runs a tiny CPU version)", file=sys.stderr)
        return 0

    presets = args.presets or (["c2d", "c2d_3dbat"] if device.type == "cpu" else list(PRESETS))
    rows = []
    print(f"{'preset':<10} {'mode':<9} {'clips/s':>9}", flush=True)
    for preset in presets:
        arch = None
        if arch_override:
            arch = "i3d_resnet18" if preset.startswith("i3d") else "c2d_resnet18"
        figures = {}
        for mode in MODES:
            figures[mode] = measure(preset, mode, device=device, arch=arch, **shape)
            print(f"{preset:<10} {mode:<9} {figures[mode]:9.2f}", flush=True)
        rows.append({"preset": preset, "arch": arch or PRESETS[preset][1], **{f"{m}_clips_per_s": v
                     for m, v in figures.items()}, "speedup": figures["ours"] / figures["official"]})
        print(f"{preset:<10} speedup   {rows[-1]['speedup']:9.2f}x", flush=True)
    result = {"device": gpu or platform.processor() or "cpu", "torch": torch.__version__, **shape, "rows": rows,
              "note": "synthetic uint8 clips on the device; one full SGD step per batch"}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench_train.json", result)
    print(f"figures in {args.out / 'bench_train.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
