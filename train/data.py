"""What the runners take from their lists: the backend and class count they imply, and the loaders.

Every call into `pipelines`' loader construction is here: `clip_spec` and `loader_config` turn a
runner config into the `ClipSpec` / `LoaderConfig` pipelines take whole, `_loader` is the one call
of `build_loader`, and `make_loaders` builds what a run needs (train + val, or test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines.loader import build_loader
from pipelines.shards import ShardLoader, shard_loader
from pipelines.spec import ClipSpec, LoaderConfig
from train.config import RunnerConfig, TestConfig, TrainConfig
from train.distributed import DistContext
from train.runtime import RunnerConfigError
from videoprep.errors import PathError
from videoprep.records import ListRecord, read_class_map, read_list
from videoprep.tarshards import ShardSet, resolve_shards

CLASSES_FILE = "classes.txt"  # what `videoprep index` writes beside the lists
# Video files without --backend or --read_mode: the fastest per-sample reader installed (docs/benchmarks.md:
# pyav and lintel share one decode core; pyav seeks, lintel reads the whole file as the official code;
# torchcodec measured 0.5-0.7x pyav's clips/s through build_loader on this machine).
VIDEO_BACKEND = "pyav"


SNIFF_ENTRIES = 16  # entries, spread over the list, that decide whether it lists videos or frame folders


@dataclass(frozen=True)
class ListContents:
    """What the entries looked at are: 'video' files or 'frames' folders, and the counts that decided it."""

    holds: str
    example: str
    looked: int
    agree: int
    odd_one: str | None  # an entry of the other kind, named in the line that says what was chosen

    def describe(self) -> str:
        kind = "video files" if self.holds == "video" else "frame folders"
        odd = f" ({self.looked - self.agree} not, e.g. {self.odd_one})" if self.odd_one else ""
        return f"{kind} ({self.example}), {self.agree} of {self.looked} entries looked at{odd}"


def list_holds(list_file: str | os.PathLike[str], records: list[ListRecord], *, root_path: str) -> ListContents:
    """Video files or frame folders: what most of up to SNIFF_ENTRIES entries spread over the list are."""
    looked = records[:: max(1, len(records) // SNIFF_ENTRIES)][:SNIFF_ENTRIES]
    kinds: dict[str, list[str]] = {"frames": [], "video": []}
    for rec in looked:
        full = os.path.join(root_path, rec.path)
        if os.path.isdir(full) or os.path.isfile(full):
            kinds["frames" if os.path.isdir(full) else "video"].append(rec.path)
    if not kinds["frames"] and not kinds["video"]:
        raise PathError(list_file, f"none of the {len(looked)} entries looked at exists (the first: "
                                   f"{os.path.join(root_path, looked[0].path)!r}); check --root_path ({root_path!r})")
    holds = "frames" if len(kinds["frames"]) > len(kinds["video"]) else "video"
    other = kinds["video" if holds == "frames" else "frames"]
    odd_one = other[0] + ("/" if holds == "video" else "") if other else None
    return ListContents(holds, kinds[holds][0], len(looked), len(kinds[holds]), odd_one)


def infer_backend(cfg: RunnerConfig, list_file: str, records: list[ListRecord]) -> str | None:
    """Set cfg.backend from what the list holds when --backend is not given; the line that says so."""
    if cfg.backend is not None:
        return None
    contents = list_holds(list_file, records, root_path=cfg.root_path)
    explicit_mode = "read_mode" in cfg.given
    if contents.holds == "video" and explicit_mode and cfg.read_mode == "img":
        raise RunnerConfigError(
            f"{list_file}: lists {contents.describe()}, but --read_mode img reads JPEG frame folders; "
            f"pass --backend {VIDEO_BACKEND} (or --read_mode video)")
    if contents.holds == "frames" and explicit_mode and cfg.read_mode == "video":
        raise RunnerConfigError(
            f"{list_file}: lists {contents.describe()}, but --read_mode video reads video files; "
            "pass --backend frames (or --read_mode img)")
    if contents.holds == "frames":
        cfg.backend, why = "frames", ""
    elif explicit_mode:
        cfg.backend, why = "lintel", ", --read_mode video"
    else:
        cfg.backend, why = VIDEO_BACKEND, ""
    return f"backend {cfg.backend} ({list_file} lists {contents.describe()}{why}; --backend overrides)"


def infer_num_classes(cfg: RunnerConfig, lists: dict[str, list[ListRecord]], *, taken: frozenset[str]) -> str | None:
    """Set cfg.num_classes unless given or taken from a checkpoint: classes.txt beside the first list, else the
    largest label + 1 (never a silent default); every label must fit. The line that says what was inferred."""
    first = next(iter(lists))
    top = max(rec.label for records in lists.values() for rec in records)
    line = None
    if "num_classes" in cfg.given:
        source = f"--num_classes {cfg.num_classes}"
    elif "num_classes" in taken:
        source = "the checkpoint"
    elif (classes := Path(first).parent / CLASSES_FILE).is_file():
        cfg.num_classes = len(read_class_map(classes))
        source = str(classes)
        line = f"num_classes {cfg.num_classes} (the lines of {classes}; --num_classes overrides)"
    else:
        cfg.num_classes = top + 1
        return (f"num_classes {cfg.num_classes} (the largest label in the lists + 1: no {CLASSES_FILE} beside "
                f"{first}; --num_classes overrides)")
    check_labels(lists, num_classes=cfg.num_classes, source=source)
    return line


def check_labels(lists: dict[str, list[ListRecord]], *, num_classes: int, source: str) -> None:
    """Every label in 0..num_classes-1; the error names the list, the entry and --num_classes."""
    for list_file, records in lists.items():
        worst = max(records, key=lambda rec: rec.label)
        if worst.label >= num_classes:
            raise RunnerConfigError(
                f"{list_file}: label {worst.label} ({worst.path}) does not fit {num_classes} classes (from {source}); "
                f"pass --num_classes {worst.label + 1} or more, or fix the list")


def shard_sets(cfg: RunnerConfig) -> dict[str, ShardSet]:
    """Mode -> the shards of --shards (train or test) and train's --val-shards, each with its index.

    The runners need the index (class count, batches per epoch): beside the shards, or
    --shards-index (a copy, for pipe: commands). Validation defaults to val.json beside the
    training index.
    """
    if not cfg.shards:
        return {}
    main = resolve_shards(cfg.shards, allow_pipe=True, index=cfg.shards_index)
    _require_index(main, cfg.shards)
    if isinstance(cfg, TestConfig):
        return {"test": main}
    assert main.index is not None
    val_pattern = getattr(cfg, "val_shards", None) or _beside(main.index.source, "val.json")
    val = resolve_shards(val_pattern, allow_pipe=True)
    _require_index(val, val_pattern)
    return {"train": main, "val": val}


def _beside(source: str, name: str) -> str:
    return source.rsplit("/", 1)[0] + "/" + name if "/" in source else name


def _require_index(shards: ShardSet, pattern: str) -> None:
    if shards.index is None:
        raise RunnerConfigError(f"{pattern}: no shard index ({{split}}.json) beside the shards; the runners need "
                                "it for the class count and the batches per epoch (for pipe: commands, pass a "
                                "copy of it with --shards-index)")


def inspect_shards(cfg: RunnerConfig, *, taken: frozenset[str] = frozenset()) -> list[str]:
    """Read the shards' indexes before any model exists: --num_classes from them, the pyav decode core; what was said."""
    said = []
    if cfg.backend not in (None, "pyav"):
        raise RunnerConfigError(f"--shards decodes in memory with the pyav core; --backend {cfg.backend} reads files")
    cfg.backend = "pyav"
    for mode, shards in shard_sets(cfg).items():
        index = shards.index
        assert index is not None  # shard_sets requires it
        if mode in ("train", "test") and "num_classes" not in cfg.given and "num_classes" not in taken:
            cfg.num_classes = index.num_classes
            said.append(f"num_classes {cfg.num_classes} (from {index.source}; --num_classes overrides)")
        if index.num_classes > cfg.num_classes:
            raise RunnerConfigError(f"{index.source}: {index.num_classes} classes, more than --num_classes "
                                    f"{cfg.num_classes}")
    return said


def inspect_lists(cfg: RunnerConfig, lists: list[str], *, taken: frozenset[str] = frozenset()) -> list[str]:
    """Read every list (format and labels) before any model exists; infer backend and classes; the lines saying so."""
    if cfg.shards:
        return inspect_shards(cfg, taken=taken)
    records = {list_file: read_list(list_file, num_classes=None) for list_file in lists}
    negative = [(f, rec) for f, recs in records.items() for rec in recs if rec.label < 0][:1]
    if negative:
        (list_file, rec), = negative
        raise RunnerConfigError(f"{list_file}: label {rec.label} ({rec.path}) is negative; labels are 0..N-1")
    said = [infer_num_classes(cfg, records, taken=taken), infer_backend(cfg, lists[0], records[lists[0]])]
    return [line for line in said if line]


@dataclass
class ShardedLoader:
    """An evaluation loader split exactly over ranks: each rank's even shard, then its share of the remainder.

    Every list entry is seen by exactly one rank, once. `indices` are the list positions in the
    order this rank yields them (used to put test scores back in list order).
    """

    parts: list[Any]
    indices: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for part in self.parts:
            yield from part


class StreamedEval:
    """A val/test loader over shards: each clip once over all ranks; the entries it yielded are known after a pass."""

    def __init__(self, loader: ShardLoader) -> None:
        self.loader = loader
        self.parts = [loader]

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self.loader

    @property
    def indices(self) -> list[int]:
        """List positions yielded so far, in order (the clips' json `index`)."""
        return [index for index, _ in self.loader.seen]

    @property
    def names(self) -> dict[int, str]:
        """List position -> the clip's source path, for what was yielded."""
        return dict(self.loader.seen)

    @property
    def count(self) -> int:
        """Clips of the split over every rank (from the shards' index)."""
        index = self.loader.dataset.shards.index
        if index is None:
            raise RunnerConfigError("testing over shards needs their index ({split}.json) beside them")
        return index.total_clips


@dataclass
class Loaders:
    """The loaders of one run: train and val for training, test alone for testing."""

    train: Any = None
    val: ShardedLoader | StreamedEval | None = None
    test: ShardedLoader | StreamedEval | None = None


def visit_order(loader: Any) -> list[int]:
    """List entries a loader yields, in order (DALI loaders say so; ours tag each index with the epoch)."""
    if hasattr(loader, "order"):
        return list(loader.order())
    return [index for index, _ in loader.sampler]


def loader_config(cfg: RunnerConfig, ctx: DistContext, *, batch_size: int, seed: int) -> LoaderConfig:
    """How both runners load clips, from their flags; GPU-capable backends decode on this rank's GPU."""
    device = f"cuda:{ctx.local_rank}" if ctx.device.type == "cuda" else "cpu"
    if ctx.device.type == "cuda" and cfg.loader_backend != "dali":
        device = "auto"  # the backend's default: CPU decoding in DataLoader workers
    return LoaderConfig(root_path=cfg.root_path, backend=cfg.loader_backend, workers=cfg.workers,
                        num_classes=cfg.num_classes, max_bad_fraction=cfg.max_bad_fraction, batch_size=batch_size,
                        seed=seed, device=device, distributed=ctx.is_distributed, num_replicas=ctx.world_size,
                        rank=ctx.rank)


def clip_spec(cfg: TrainConfig | TestConfig) -> ClipSpec:
    """What a clip is, from the flags: train clips for training (val takes `for_mode("val")`), test views for testing."""
    if isinstance(cfg, TestConfig):
        return ClipSpec(mode="test", seq_length=cfg.seq_length, sample_rate=cfg.sample_rate,
                        test_segments=cfg.test_segments, test_crops=cfg.test_crops, crop_size=cfg.img_size,
                        scale_size=cfg.scale, norm=cfg.norm)
    return ClipSpec(mode="train", seq_length=cfg.seq_length, sample_rate=cfg.sample_rate,
                    num_segments=cfg.num_segments, crop_size=cfg.crop_size, scale_size=cfg.scale_size, norm=cfg.norm,
                    num_clips=cfg.num_clips)


def _loader(list_file: str, clip: ClipSpec, config: LoaderConfig, *, subset: list[int] | None = None) -> Any:
    """The one call of pipelines' build_loader."""
    return build_loader(list_file, clip, config, subset=subset)


def build_eval_loader(list_file: str, clip: ClipSpec, config: LoaderConfig) -> ShardedLoader:
    """A val/test loader that counts every video once across ranks (no padding, no duplicates)."""
    main = _loader(list_file, clip, config.with_options(shuffle=False, drop_last=False))
    indices = visit_order(main)
    parts: list[Any] = [main] if indices else []
    remainder = list(main.remainder_indices) if config.distributed else []
    rank, world_size = (config.rank or 0), (config.num_replicas or 1)
    mine = remainder[rank::world_size]
    if mine:
        # At most one video: not worth starting processes.
        parts.append(_loader(list_file, clip, config.with_options(distributed=False, shuffle=False, drop_last=False,
                                                                  workers=0), subset=mine))
        indices.extend(mine)
    return ShardedLoader(parts=parts, indices=indices)


def make_loaders(cfg: TrainConfig | TestConfig, ctx: DistContext, *, batch_size: int, seed: int = 0,
                 with_train: bool = True) -> Loaders:
    """The loaders a run needs: val (and train unless with_train is False) for training, test for testing."""
    clip, config = clip_spec(cfg), loader_config(cfg, ctx, batch_size=batch_size, seed=seed)
    if cfg.shards:
        return _shard_loaders(cfg, clip, config, with_train=with_train)
    if isinstance(cfg, TestConfig):
        return Loaders(test=build_eval_loader(cfg.test_list, clip, config))
    loaders = Loaders(val=build_eval_loader(cfg.val_list, clip.for_mode("val"), config))
    if with_train:
        loaders.train = _loader(cfg.train_list, clip, config)
        if len(loaders.train) == 0:
            raise RunnerConfigError(f"{cfg.train_list}: fewer videos per process than the batch size ({batch_size}); "
                                    "no full batch to train on")
    return loaders


def _shard_loaders(cfg: TrainConfig | TestConfig, clip: ClipSpec, config: LoaderConfig, *,
                   with_train: bool) -> Loaders:
    """The loaders of a run over shards; val/test see each clip once over all ranks (the shards are split)."""
    sets = shard_sets(cfg)
    evaluation = config.with_options(shuffle=False, drop_last=False)
    if isinstance(cfg, TestConfig):
        return Loaders(test=StreamedEval(shard_loader(sets["test"], clip, evaluation, allow_pipe=True)))
    loaders = Loaders(val=StreamedEval(shard_loader(sets["val"], clip.for_mode("val"), evaluation, allow_pipe=True)))
    if with_train:
        loaders.train = shard_loader(sets["train"], clip, config, allow_pipe=True)
        if len(loaders.train) == 0:
            raise RunnerConfigError(f"{cfg.shards}: fewer clips per process than the batch size "
                                    f"({config.batch_size}); no full batch to train on")
    return loaders
