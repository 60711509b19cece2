"""Training input from WebDataset tar shards (`videoprep shard`): local files, http(s):// or pipe: commands.

`build_shard_loader(pattern, clip, config)` streams the tars named by a brace pattern
(`DIR/train-{000000..000041}.tar`) or by a split's index (`DIR/train.json`):

- shards are split by DDP rank, then by DataLoader worker; train shuffles the shard order
  per epoch (the same order on every rank) and mixes clips through a shuffle buffer;
- each clip's bytes are checked against the sha256 of its json, then decoded from memory by
  the decode core with the ClipSpec sampling of the file loader, seeded by the clip's list
  position: the same video and epoch give the same pixels as `build_loader` over the list;
- a bad clip (checksum, decode, unreadable shard) is counted as in the file loader
  (`BadSampleLog`) and replaced by the next good clip of the stream;
- val/test see every clip exactly once across ranks and workers; train gives every rank the
  same number of batches (clips of the split / ranks), cycling through its shards.

`pipe:` runs a shell command, so it is accepted only when the caller says the pattern came
from the command line (`allow_pipe`); an index lists bare file names in its own folder and
a name that leaves it is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipelines.backends import expand, plan_indices
from pipelines.decode import DecodeError, FrameIndexError, decode_indices
from pipelines.loader import collate_items, worker_options
from pipelines.planning import (
    BadSample,
    BadSampleError,
    BadSampleLog,
    CountsBadSamples,
    make_views,
    plan_clips,
    sample_rng,
    world,
)
from pipelines.spec import ClipSpec, LoaderConfig
from videoprep.errors import PathError, VideoprepError

log = logging.getLogger("pipelines.loader")

HTTP_TIMEOUT_S = 60.0
SHUFFLE_BUFFER = 64  # train: clips held for mixing (each a few hundred KB of encoded video)
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
_SHARD_NAME = re.compile(r"^(?P<split>.+)-\d+\.tar$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
MAX_EXPANSION = 10_000_000


class ShardError(PathError):
    """A shard pattern, index or shard that cannot be used (the path or URL and the reason)."""


# --- names ---------------------------------------------------------------------------------


def expand_braces(pattern: str) -> list[str]:
    """Brace notation as webdataset reads it: `a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar; `{x,y}` lists."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    span = _RANGE.match(body)
    if span:
        lo, hi = span.group(1), span.group(2)
        if int(hi) < int(lo) or int(hi) - int(lo) >= MAX_EXPANSION:
            raise ShardError(pattern, f"range {{{body}}} must count up, by at most {MAX_EXPANSION} names")
        width = len(lo) if lo.startswith("0") else 0
        parts = [f"{n:0{width}d}" for n in range(int(lo), int(hi) + 1)]
    else:
        parts = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end():]
    rest = expand_braces(tail)
    return [head + part + end for part in parts for end in rest]


def is_pipe(url: str) -> bool:
    return url.startswith("pipe:")


def is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def check_shard_name(name: str, *, index: str) -> str:
    """A shard name of an index: a bare file name in the index's folder; anything else is refused."""
    if (not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(("~",))
            or _URL.match(name) or "\x00" in name):
        raise ShardError(index, f"shard name {name!r} leaves the index's folder (an index lists bare file names "
                         "beside it, never paths, URLs or commands); rewrite the index with `videoprep shard`")
    return name


def _sibling(base: str, name: str) -> str:
    """`name` in the folder of `base` (a path or an http(s) URL)."""
    if is_http(base):
        return base.rsplit("/", 1)[0] + "/" + urllib.request.quote(name)
    return os.path.join(os.path.dirname(base), name)


# --- the index --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardIndex:
    """A split's `{split}.json`: its shards (names beside it), clips per shard, classes."""

    source: str
    split: str
    shards: tuple[str, ...]
    clips: tuple[int, ...]
    num_classes: int
    classes: tuple[str, ...] | None = None

    @property
    def total_clips(self) -> int:
        return sum(self.clips)

    def urls(self) -> list[str]:
        """Every shard as a path or URL beside the index."""
        return [_sibling(self.source, name) for name in self.shards]


def _read_bytes(url: str) -> bytes:
    """A small file (an index) from a path or an http(s) URL."""
    if is_http(url):
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.read()
    with open(url, "rb") as f:
        return f.read()


def read_index(source: str) -> ShardIndex:
    """Parse `{split}.json` (a path or URL); a shard name that leaves its folder is an error."""
    if is_pipe(source):
        raise ShardError(source, "an index is read from a path or an http(s) URL, not a pipe: command")
    try:
        data = json.loads(_read_bytes(source))
        shards = [check_shard_name(str(s["name"]), index=source) for s in data["shards"]]
        clips = [int(s["clips"]) for s in data["shards"]]
        classes = tuple(data["classes"]) if data.get("classes") else None
        return ShardIndex(source=source, split=str(data["split"]), shards=tuple(shards), clips=tuple(clips),
                          num_classes=int(data["num_classes"]), classes=classes)
    except (OSError, urllib.error.URLError) as exc:
        raise ShardError(source, f"cannot read the shard index: {getattr(exc, 'reason', exc)}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardError(source, f"not a shard index written by `videoprep shard` ({type(exc).__name__}: {exc})") from None


def index_beside(url: str) -> str | None:
    """Where the index of a shard lives (`DIR/train-000003.tar` -> `DIR/train.json`); None for pipe: commands."""
    if is_pipe(url):
        return None
    match = _SHARD_NAME.match(url.rsplit("/", 1)[-1])
    return _sibling(url, f"{match.group('split')}.json") if match else None


@dataclass(frozen=True)
class ShardSet:
    """The shards a loader streams, and their index when one was found (counts and classes)."""

    urls: tuple[str, ...]
    index: ShardIndex | None = None

    def clips_of(self) -> dict[str, int] | None:
        """Shard -> clips, from the index (None without one)."""
        if self.index is None:
            return None
        return dict(zip(self.index.urls(), self.index.clips, strict=True))


def resolve_shards(pattern: str, *, allow_pipe: bool = False, index: str | None = None) -> ShardSet:
    """The shards of a brace pattern or an index file, with the index (beside them, or `index`) if there is one."""
    if pattern.endswith(".json"):
        found = read_index(pattern)
        return ShardSet(urls=tuple(found.urls()), index=found)
    urls = expand_braces(pattern)
    if any(is_pipe(u) for u in urls) and not allow_pipe:
        raise ShardError(pattern, "pipe: runs a shell command, so it is accepted only from the command line")
    where = index or index_beside(urls[0])
    found = None
    if where is not None and (index is not None or is_http(where) or os.path.isfile(where)):
        try:
            found = read_index(where)
        except ShardError:
            if index is not None:
                raise
            log.info("no usable shard index at %s: clip counts unknown", where)
    return ShardSet(urls=tuple(urls), index=found)


# --- reading a shard ----------------------------------------------------------------------------


@contextmanager
def open_shard(url: str, *, allow_pipe: bool) -> Iterator[IO[bytes]]:
    """A readable stream of one tar: a file, an http(s) response or a pipe: command's stdout."""
    if is_pipe(url):
        if not allow_pipe:
            raise ShardError(url, "pipe: runs a shell command, so it is accepted only from the command line")
        with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty command cannot block on it
            proc = subprocess.Popen(url[len("pipe:"):], shell=True, stdout=subprocess.PIPE, stderr=errors)  # noqa: S602 - the user's own command line
            assert proc.stdout is not None
            try:
                yield proc.stdout
            except BaseException:  # the reader stopped early (epoch quota, Ctrl-C): the command is not needed
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdout.close()
            if proc.wait() != 0:
                errors.seek(0)
                tail = errors.read()[-300:].decode(errors="replace").strip()
                raise ShardError(url, f"command exited {proc.returncode}: {tail}")
        return
    if is_http(url):
        try:
            response = urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S)
        except urllib.error.URLError as exc:
            raise ShardError(url, f"cannot fetch: {exc.reason}") from None
        with response:
            yield io.BufferedReader(response, buffer_size=1 << 20)  # few, large socket reads
        return
    path = url[len("file://"):] if url.startswith("file://") else url
    with open(path, "rb", buffering=1 << 20) as f:
        yield f


@dataclass
class RawSample:
    """One clip as a tar holds it: key, video bytes and extension, the parsed json; where it came from."""

    url: str
    key: str
    video: bytes | None = None
    ext: str = ""
    meta: dict[str, Any] | None = None

    @property
    def where(self) -> str:
        return f"{self.url}#{self.key}"


def split_name(name: str) -> tuple[str, str]:
    """A member name -> (key, extension), as webdataset splits it: the key ends at the basename's first dot."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


class TarFormatError(ShardError):
    """A tar stream that is cut short or whose header is damaged."""


_BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")


def _octal(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 (sizes past 8 GiB); ValueError when neither."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a pax extended header, if any (records are `LEN key=value\n`)."""
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
        pos += length
    return None


def tar_members(stream: IO[bytes], url: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular file of a tar stream, read in one pass with one read per member.

    Reads ustar, GNU (long names) and pax (path records) headers; checks each header's
    checksum. tarfile's stream mode reads members in 10 KiB pieces and costs about 5x more.
    """
    long_name: str | None = None
    while True:
        header = stream.read(_BLOCK)
        if len(header) < _BLOCK:
            if header:
                raise TarFormatError(url, "the tar ends inside a header (cut short?)")
            return
        if header == bytes(_BLOCK):
            return  # end-of-archive marker
        try:
            checksum, size = _octal(header[148:156]), _octal(header[124:136])
        except ValueError:
            checksum = size = -1
        if checksum != sum(header[:148]) + 8 * 32 + sum(header[156:]) or size < 0:
            raise TarFormatError(url, "a tar header's checksum does not match (a damaged shard)")
        kind = header[156:157]
        data = stream.read(size)
        if len(data) < size:
            raise TarFormatError(url, "the tar ends inside a member (cut short?)")
        stream.read(-size % _BLOCK)
        if kind == b"L":
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == b"x":
            long_name = _pax_path(data) or long_name
        elif kind in _REGULAR:
            name = long_name or _header_name(header)
            long_name = None
            yield name, data
        else:
            long_name = None  # folders, links, global headers: nothing a clip is made of


def _header_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    return (prefix + b"/" + name if prefix else name).decode("utf-8", "surrogateescape")


def tar_samples(stream: IO[bytes], url: str) -> Iterator[RawSample]:
    """The clips of a tar stream, members grouped by key (consecutive, as the writer puts them)."""
    current: RawSample | None = None
    for name, data in tar_members(stream, url):
        key, ext = split_name(name)
        if current is not None and current.key != key:
            yield current
            current = None
        current = current or RawSample(url=url, key=key)
        if ext == "json":
            try:
                current.meta = json.loads(data)
            except ValueError:
                current.meta = None
        else:
            current.video, current.ext = data, ext
    if current is not None:
        yield current


# --- the dataset ----------------------------------------------------------------------------------


class ShardItem(NamedTuple):
    """An `Item` that also says which clip it stands for: its list position and path (from its json)."""

    clips: torch.Tensor
    label: int
    bad: tuple[BadSample, ...]
    index: int
    path: str


def collate_shard_items(batch: list[ShardItem]) -> tuple[torch.Tensor, torch.Tensor, list[BadSample],
                                                          list[tuple[int, str]]]:
    """`collate_items`, plus the (list position, path) of every video in the batch."""
    return (*collate_items(batch), [(item.index, item.path) for item in batch])


def assign(urls: list[str], *, slot: int, slots: int) -> list[str]:
    """This slot's shards (slot = rank * workers + worker): every shard to exactly one slot."""
    return urls[slot::slots]


def per_slot_counts(total: int, slots: int) -> list[int]:
    """Train: how many clips each slot yields per epoch, so every rank has the same number."""
    return [total // slots + (1 if i < total % slots else 0) for i in range(slots)]


class ShardClipDataset(IterableDataset):
    """Clips streamed from tar shards, sampled, decoded and cropped as `VideoClipDataset` does."""

    def __init__(self, shards: ShardSet, clip: ClipSpec, config: LoaderConfig, *, allow_pipe: bool = False,
                 shuffle_buffer: int | None = None) -> None:
        self.shards, self.clip, self.config = shards, clip, config
        self.allow_pipe = allow_pipe
        self.train = config.shuffles(clip.mode)
        self.shuffle_buffer = (SHUFFLE_BUFFER if self.train else 0) if shuffle_buffer is None else shuffle_buffer
        self.replicas, self.rank = world(config)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_urls(self) -> list[str]:
        """The shard order of this epoch: shuffled by (seed, epoch) in train, the same on every rank."""
        urls = list(self.shards.urls)
        if self.train:
            random.Random(f"{self.config.seed}-{self.epoch}").shuffle(urls)
        return urls

    def slot(self) -> tuple[int, int]:
        """(this process's slot, slots): ranks x DataLoader workers."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.replicas * workers

    def quota(self) -> int | None:
        """Train: clips this slot yields per epoch (equal batches on every rank); None: each shard once."""
        if not self.train or self.shards.index is None:
            return None
        slot, slots = self.slot()
        return per_slot_counts(self.shards.index.total_clips, slots)[slot]

    def __iter__(self) -> Iterator[ShardItem]:
        slot, slots = self.slot()
        quota = self.quota()
        urls = assign(self.epoch_urls(), slot=slot, slots=slots)
        if not urls and quota:
            urls = [self.epoch_urls()[slot % len(self.shards.urls)]]  # fewer shards than slots: share one
        rng = random.Random(f"{self.config.seed}-{self.epoch}-{slot}")
        buffer = self.shuffle_buffer if quota is None else min(self.shuffle_buffer, quota)  # never re-read to fill it
        items = self._items(self._mixed(self._raw(urls, cycle=quota is not None), rng, buffer))
        for count, item in enumerate(items):
            if quota is not None and count >= quota:
                return
            yield item

    def _raw(self, urls: list[str], *, cycle: bool) -> Iterator[RawSample | BadSample]:
        """Every clip of these shards (again and again when `cycle`); an unreadable shard becomes a BadSample."""
        while True:
            for url in urls:
                try:
                    with open_shard(url, allow_pipe=self.allow_pipe) as stream:
                        yield from tar_samples(stream, url)
                except (OSError, PathError) as exc:
                    reason = exc.reason if isinstance(exc, PathError) else f"{type(exc).__name__}: {exc}"
                    yield BadSample(-1, url, "read", f"shard unreadable: {reason}")
            if not cycle or not urls:
                return

    @staticmethod
    def _mixed(samples: Iterator[RawSample | BadSample], rng: random.Random,
               size: int) -> Iterator[RawSample | BadSample]:
        """A shuffle buffer of `size` clips (0 or 1: stream order)."""
        if size <= 1:
            yield from samples
            return
        buffer: list[RawSample | BadSample] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= size:
                pick = rng.randrange(len(buffer))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def _items(self, samples: Iterator[RawSample | BadSample]) -> Iterator[ShardItem]:
        """Decoded items; each bad sample is replaced by the next good one (and reported with it).

        A stand-in takes the bad clip's list position and path, as the file loader's does.
        """
        pending: list[BadSample] = []
        last: ShardItem | None = None
        for sample in samples:
            if not isinstance(sample, BadSample):
                try:
                    clips, label = self.load(sample)
                except (PathError, OSError) as exc:
                    sample = self.bad_sample(sample, exc)
            if isinstance(sample, BadSample):
                pending.append(sample)
                if len(pending) > self.config.max_replacements:  # as the file loader: give up, do not spin
                    raise BadSampleError(pending[0].path, f"this clip and the {len(pending) - 1} after it all "
                                         f"failed; last: {pending[-1].reason}")
                continue
            assert sample.meta is not None  # load() checked it
            last = ShardItem(clips, label, (), int(sample.meta["index"]), str(sample.meta["path"]))
            yield last
            for bad in pending:  # the stand-ins of the bad clips met before it
                yield last._replace(bad=(bad,), index=bad.index, path=bad.path)
            pending = []
        if pending and last is not None:
            for bad in pending:
                yield last._replace(bad=(bad,), index=bad.index, path=bad.path)
        elif pending:
            raise ShardError(pending[0].path, f"no readable clip in this process's shards; first: {pending[0].reason}")

    def load(self, sample: RawSample) -> tuple[torch.Tensor, int]:
        """Check the bytes against the json's sha256, plan the clips, decode from memory, crop."""
        meta = sample.meta
        if meta is None or sample.video is None:
            raise ShardError(sample.where, "a clip needs both its video and its json member")
        if hashlib.sha256(sample.video).hexdigest() != meta.get("sha256"):
            raise ChecksumError(sample.where, "the video's bytes do not match the sha256 in its json")
        index, frame_num, label = int(meta["index"]), int(meta["frame_num"]), int(meta["label"])
        rng = sample_rng(seed=self.config.seed, epoch=self.epoch, index=index) if self.clip.mode == "train" else None
        flat = [i for clip in plan_clips(frame_num, self.clip, rng) for seg in clip for i in seg]
        return make_views(frames_of(sample, flat), self.clip, rng), label

    @staticmethod
    def bad_sample(sample: RawSample, exc: Exception) -> BadSample:
        index = int(sample.meta.get("index", -1)) if sample.meta else -1
        path = str(sample.meta.get("path", sample.where)) if sample.meta else sample.where
        kind = ("checksum" if isinstance(exc, ChecksumError) else "frame_num" if isinstance(exc, FrameIndexError)
                else "decode" if isinstance(exc, DecodeError) else "read")
        reason = exc.reason if isinstance(exc, PathError) else f"{type(exc).__name__}: {exc}"
        return BadSample(index, path, kind, f"{sample.where}: {reason}")


class ChecksumError(ShardError):
    """A clip whose bytes differ from the sha256 its json records (a corrupted or altered shard)."""


# --- the loader -------------------------------------------------------------------------------------


class ShardLoader(CountsBadSamples):
    """Iterable of `(clips, labels)` batches over shards, with `set_epoch`, `len()` and bad-sample accounting."""

    def __init__(self, dataset: ShardClipDataset, config: LoaderConfig) -> None:
        self.dataset, self.config = dataset, config
        self.num_replicas, self.rank = dataset.replicas, dataset.rank
        index = dataset.shards.index
        num_videos = index.total_clips if index is not None else len(dataset.shards.urls)
        self.bad_log = BadSampleLog(dataset.shards.urls[0], num_videos=num_videos, config=config)
        self.seen: list[tuple[int, str]] = []  # (list position, path) of every video of the last pass
        self._loader = DataLoader(
            dataset, batch_size=config.batch_size, collate_fn=collate_shard_items,
            pin_memory=torch.cuda.is_available() if config.pin_memory is None else config.pin_memory,
            drop_last=config.drops_last(dataset.clip.mode), **worker_options(config),
        )

    def set_epoch(self, epoch: int) -> None:
        """New shard order, shuffle and random clips for `epoch` (workers start afresh each epoch)."""
        self.dataset.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def __len__(self) -> int:
        """Batches this rank yields per epoch (from the index's clip counts)."""
        counts = self.dataset.shards.clips_of()
        if counts is None:
            raise TypeError("the number of batches is unknown without the shards' index ({split}.json)")
        workers = max(self.config.workers, 1)
        size, drop = self.config.batch_size, self.config.drops_last(self.dataset.clip.mode)
        slots = self.num_replicas * workers
        if self.dataset.train:
            per_slot = per_slot_counts(sum(counts.values()), slots)
            mine = [per_slot[self.rank * workers + w] for w in range(workers)]
        else:
            urls = list(self.dataset.shards.urls)
            mine = [sum(counts[u] for u in assign(urls, slot=self.rank * workers + w, slots=slots))
                    for w in range(workers)]
        return sum(n // size if drop else -(-n // size) for n in mine)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.seen = []
        for clips, labels, bad, seen in self._loader:
            if bad:
                self.bad_log.record(bad)
            self.seen.extend(seen)
            yield clips, labels

    def __repr__(self) -> str:
        return (f"ShardLoader(shards={len(self.dataset.shards.urls)}, mode={self.dataset.clip.mode!r}, "
                f"replicas={self.num_replicas}, rank={self.rank})")


def build_shard_loader(pattern: str, clip: ClipSpec, config: LoaderConfig, *, allow_pipe: bool = False,
                       index: str | None = None, shuffle_buffer: int | None = None) -> ShardLoader:
    """A loader of uint8 `(clips [B*K, V, C, T, H, W], labels [B*K])` batches streamed from tar shards.

    `pattern` is a brace pattern of paths, http(s):// URLs or (with `allow_pipe`, for command-line
    input only) pipe: commands, or a split's index `DIR/{split}.json`.
    """
    shards = resolve_shards(pattern, allow_pipe=allow_pipe, index=index)
    return shard_loader(shards, clip, config, allow_pipe=allow_pipe, shuffle_buffer=shuffle_buffer)


def shard_loader(shards: ShardSet, clip: ClipSpec, config: LoaderConfig, *, allow_pipe: bool = False,
                 shuffle_buffer: int | None = None) -> ShardLoader:
    """`build_shard_loader` over shards already resolved (`resolve_shards`)."""
    if not shards.urls:
        raise VideoprepError("the shard pattern names no shard")
    return ShardLoader(ShardClipDataset(shards, clip, config, allow_pipe=allow_pipe,
                                        shuffle_buffer=shuffle_buffer), config)


def frames_of(sample: RawSample, indices: list[int]) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] RGB of a streamed clip at 0-based indices (what the file readers return)."""
    if sample.video is None:
        raise ShardError(sample.where, "no video member")
    unique, inverse = plan_indices(indices)
    return expand(decode_indices(io.BytesIO(sample.video), unique, name=sample.where), inverse)
