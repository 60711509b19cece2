"""What the bench measures: its config, the file-set views, and the same samples for every measure."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pipelines.sampling import clip_indices
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.benchsample import DEFAULT_ENCODINGS
from videoprep.errors import VideoprepError
from videoprep.records import ListRecord

View = Literal["train", "val", "test"]
VIEWS: tuple[str, ...] = ("train", "val", "test")
# Measured unless --backends says otherwise; any name of the backend registry (`videoprep backends`) is accepted.
DEFAULT_BACKENDS: tuple[str, ...] = ("pyav", "lintel", "frames", "dali")
PEERS: tuple[str, ...] = ("decord", "torchcodec")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long; `list_file` measures a list as is, `generate` builds a sample first.

    `clip` is the clip every view takes (its mode is set per view) and `loader` how the
    DataLoader measures load (batch, seed, the list's root): the same objects the runners pass.
    """

    out_dir: Path
    list_file: Path | None = None
    generate: bool = False
    sample_source: str | None = None  # --generate from these videos (a BAT list or a folder); None: real footage
    sample_synthetic: bool = False  # --generate from synthetic lavfi footage instead of real footage
    sample_videos: int = 4
    sample_seconds: float = 10.0
    sample_size: tuple[int, int] = (340, 256)  # real or synthetic footage, width x height
    encodings: tuple[str, ...] = DEFAULT_ENCODINGS
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    peers: bool = True
    workers: tuple[int, ...] = (0, 1, 2)
    clips: int = 32  # clips per measurement (per view, file set and backend)
    repeats: int = 3
    warmup_clips: int = 2
    views: tuple[str, ...] = VIEWS
    loader_views: tuple[str, ...] | None = None  # views measured through the DataLoader (None: all views)
    loader_encodings: tuple[str, ...] | None = None  # file sets with a DataLoader sweep (None: all)
    reference_views: tuple[str, ...] | None = None  # views with peers and official Lintel usage (None: all)
    clip: ClipSpec = field(default_factory=lambda: ClipSpec(seq_length=8, sample_rate=8, test_segments=10))
    loader: LoaderConfig = field(default_factory=lambda: LoaderConfig(batch_size=4, seed=0))

    def __post_init__(self) -> None:
        for name, value in (("clips", self.clips), ("repeats", self.repeats), ("batch_size", self.loader.batch_size)):
            if value < 1:
                raise VideoprepError(f"{name} ({value}) must be >= 1")
        bad = [v for v in (*self.views, *(self.loader_views or ()), *(self.reference_views or ())) if v not in VIEWS]
        if bad:
            raise VideoprepError(f"view(s) {', '.join(bad)} unknown: valid are {', '.join(VIEWS)}")
        from pipelines.backends import backend_names

        bad = [b for b in self.backends if b not in backend_names()]
        if bad:
            raise VideoprepError(f"backend(s) {', '.join(bad)} unknown: valid are {', '.join(backend_names())} "
                                 "(`videoprep backends` lists them)")
        if any(w < 0 for w in self.workers) or not self.workers:
            raise VideoprepError(f"workers ({self.workers}) must be one or more counts >= 0")
        if self.list_file is None and not self.generate:
            raise VideoprepError("nothing to measure: give a list file or ask to generate a sample")


@dataclass(frozen=True)
class Sample:
    """One dataset item: a video (file or frame folder) and every frame index its views need."""

    path: str
    indices: tuple[int, ...]
    clips: int


def view_segments(view: str, *, test_segments: int) -> int:
    """Clips per sample in a view: 1 in train/val (BAT default num_segments), test_segments in test."""
    return test_segments if view == "test" else 1


def plan_samples(
    records: Sequence[ListRecord], *, root_path: str, view: str, clips: int, clip: ClipSpec, seed: int,
) -> list[Sample]:
    """Enough samples for `clips` clips, cycling over the videos, indices by the official rules."""
    rng = np.random.default_rng(seed)
    segments = view_segments(view, test_segments=clip.test_segments)
    out = []
    for i in range(math.ceil(clips / segments)):
        rec = records[i % len(records)]
        per_clip = clip_indices(
            rec.frame_num, num_segments=segments, seq_length=clip.seq_length, sample_rate=clip.sample_rate,
            mode=view, rng=rng,  # type: ignore[arg-type]
        )
        flat = tuple(i for clip in per_clip for i in clip)
        out.append(Sample(path=os.path.join(root_path, rec.path), indices=flat, clips=segments))
    return out
