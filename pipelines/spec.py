"""What a clip is (`ClipSpec`) and how clips are loaded (`LoaderConfig`).

Both are built once, from the CLI flags or a runner's config, and passed whole through
every layer (`build_loader`, `VideoClipDataset`, the DALI loader), so no layer repeats
their fields as keywords and a new setting is added in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipelines import transforms as T
from pipelines.sampling import MODES, TEST_CROPS, Mode, clip_span

if TYPE_CHECKING:
    from pipelines.reader import VideoReader

# Bad videos tolerated whatever max_bad_fraction says (a tiny list must not stop on its first one).
MIN_BAD_SAMPLES = 5
# How many other videos to try, one after another, before a sample gives up.
MAX_REPLACEMENTS = 10
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ClipSpec:
    """What a clip is: frames per clip and their stride, segments, views and crops, sizes, norm, mode.

    Train draws `num_segments` random clips (one crop for all of them); val takes the
    centred ones; test takes `test_segments` x `test_crops` views. `num_clips` K > 1
    (train only) draws K independent clips of each video, decoded in one pass and
    returned as K samples (repeated augmentation).
    """

    mode: Mode = "train"
    seq_length: int = 8
    sample_rate: int = 8
    num_segments: int = 1
    test_segments: int = 10
    test_crops: int = 1
    crop_size: int = T.CROP_SIZE
    scale_size: int = T.SCALE_SIZE
    num_clips: int = 1
    norm: T.Norm = "official"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode ({self.mode!r}) must be one of {', '.join(MODES)}")
        for name in ("seq_length", "sample_rate", "num_segments", "test_segments", "crop_size", "num_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} ({getattr(self, name)}) must be >= 1")
        if self.test_crops not in TEST_CROPS:
            raise ValueError(f"test_crops ({self.test_crops}) must be one of {TEST_CROPS}")
        # Crop and short-side resize (official 224/256; smaller sizes make CPU smoke runs fast).
        if self.crop_size > self.scale_size:
            raise ValueError(f"crop_size ({self.crop_size}) must be <= scale_size ({self.scale_size})")
        if self.num_clips > 1 and self.mode != "train":
            raise ValueError(f"num_clips ({self.num_clips}) > 1 repeats random train clips; "
                             f"{self.mode} views are fixed: use num_clips 1")
        if self.norm not in T.NORMS:
            raise ValueError(f"norm ({self.norm!r}) must be one of {', '.join(T.NORMS)}")

    @property
    def segments(self) -> int:
        """Clips per view set: num_segments in train/val, test_segments in test."""
        return self.test_segments if self.mode == "test" else self.num_segments

    @property
    def views(self) -> int:
        """V: views per sample (segments, times crops per segment in test)."""
        return self.segments * (self.test_crops if self.mode == "test" else 1)

    @property
    def span(self) -> int:
        """Frames one clip spans from its first to its last index."""
        return clip_span(seq_length=self.seq_length, sample_rate=self.sample_rate)

    def for_mode(self, mode: Mode) -> ClipSpec:
        """The same clip in another mode (val/test take one clip per video)."""
        return replace(self, mode=mode, num_clips=self.num_clips if mode == "train" else 1)


@dataclass(frozen=True)
class LoaderConfig:
    """How clips are loaded: the list's root, backend and device, workers, batch, seed, shards, bad-sample policy.

    `batch_size` counts videos; with ClipSpec.num_clips K a batch holds K x batch_size samples.
    `device` is where the backend decodes: "auto" is the backend's default (DALI: the GPU when
    there is one; the others: CPU), "cuda[:N]" asks for GPU decoding (DALI, torchcodec).
    `shuffle` and `drop_last` default to True in train, False in val/test. `check_files`
    fails at once when a listed video does not exist; `verify_frame_num` counts each video's
    frames once (a demux) and treats an overstated list frame_num as a bad sample.
    """

    backend: str | VideoReader = "pyav"  # a registry name (`videoprep backends`), or a reader object
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    root_path: str = ""
    num_classes: int | None = 400
    batch_size: int = 1
    workers: int = 4
    seed: int = 0
    device: str = "auto"
    shuffle: bool | None = None
    drop_last: bool | None = None
    distributed: bool = False
    num_replicas: int | None = None
    rank: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool = True
    prefetch_factor: int | None = 2
    max_bad_fraction: float = 0.01
    min_bad_samples: int = MIN_BAD_SAMPLES
    max_replacements: int = MAX_REPLACEMENTS
    check_files: bool = True
    verify_frame_num: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size ({self.batch_size}) must be >= 1")
        if self.workers < 0:
            raise ValueError(f"workers ({self.workers}) must be >= 0")
        if self.seed < 0:
            raise ValueError(f"seed ({self.seed}) must be >= 0")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction ({self.max_bad_fraction}) must be in 0..1")
        if not _DEVICE.match(str(self.device)):
            raise ValueError(f"device ({self.device!r}) must be auto, cpu, cuda or cuda:N")
        object.__setattr__(self, "root_path", str(self.root_path))
        object.__setattr__(self, "backend_options", dict(self.backend_options))

    def shuffles(self, mode: Mode) -> bool:
        """Whether the sampler shuffles: `shuffle`, else only in train."""
        return mode == "train" if self.shuffle is None else self.shuffle

    def drops_last(self, mode: Mode) -> bool:
        """Whether the last partial batch is dropped: `drop_last`, else only in train."""
        return mode == "train" if self.drop_last is None else self.drop_last

    def with_options(self, **changes: Any) -> LoaderConfig:
        """A copy with some fields changed (e.g. one shard, or no workers for a tiny remainder)."""
        return replace(self, **changes)
