"""What the benchmark scripts share: the checkout on the import path, generated video sources, the machine record.

The scripts run as files from a checkout (`python benchmarks/bench_x.py`): this folder is then on sys.path,
and `import _common` (their first import from it) puts the checkout's root there too, once for all of them,
so `videoprep`, `pipelines` and `train` import from the checkout even where the project is not installed.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- generated video sources -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSet:
    """Generated videos of one encoding: their name, suffix and videoprep.synth.write_video options."""

    name: str
    suffix: str
    options: dict[str, Any] = field(default_factory=dict)


def _write_one(args: tuple[str, dict[str, Any]]) -> str:
    from videoprep.synth import write_video

    path, options = args
    tmp = Path(path).with_name(f".{Path(path).stem}.tmp{Path(path).suffix}")
    write_video(tmp, **options)
    os.replace(tmp, path)  # an interrupted run leaves no short video under the final name
    return path


def generated_videos(folder: Path, video_set: VideoSet, *, count: int, frames: int, width: int = 340,
                     height: int = 256, fps: float = 30, first_seed: int = 0) -> list[Path]:
    """`count` distinct videos (seeds first_seed..), content changing every frame; made once, in parallel.

    A video already in `folder` under its name is reused, so a cache folder keeps them across runs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / f"{video_set.name}_{i:03d}{video_set.suffix}" for i in range(count)]
    todo = [(str(p), {**video_set.options, "num_frames": frames, "width": width, "height": height, "fps": fps,
                      "seed": first_seed + i}) for i, p in enumerate(wanted) if not p.is_file()]
    if len(todo) == 1:
        _write_one(todo[0])
    elif todo:
        with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(_write_one, todo))
    return wanted


def copies_under(sources: Sequence[Path], destinations: Sequence[Path]) -> list[Path]:
    """Real copies of a few sources to many destinations, in turn (each reader then reads its own file)."""
    for i, dst in enumerate(destinations):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[i % len(sources)], dst)
    return list(destinations)


# --- the machine record -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def machine_record() -> dict[str, Any]:
    """Host, CPU, cores this process may use, load average, Python and platform: what every figure is read with."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"host": platform.node(), "platform": platform.platform(), "python": sys.version.split()[0],
            "cpu_model": _cpu_model(), "cpu_count": cores, "load_average": [round(x, 2) for x in os.getloadavg()],
            "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
