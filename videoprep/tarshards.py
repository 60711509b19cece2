"""Reading WebDataset tar shards as bytes: brace patterns, the split's index, streams, tar members.

The format layer under `pipelines.shards` (which decodes): no torch here.

- names: `expand_braces` (webdataset's `{000000..000041}` and `{a,b}`), `check_shard_name`
  (an index lists bare file names in its own folder, nothing else);
- the index: `read_index` (`{split}.json` from a path or an http(s) URL), `resolve_shards`;
- streams: `open_shard` (a file, an http(s) response, or a `pipe:` command's stdout, the
  last only when the caller says the pattern came from the command line);
- members: `tar_members` (one read per member; ustar, GNU and pax headers), `tar_samples`
  (members grouped into clips by key, as webdataset groups them).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from videoprep.errors import PathError

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 60.0
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
                parsed = json.loads(data)
            except ValueError:
                parsed = None
            current.meta = parsed if isinstance(parsed, dict) else None  # anything else: the clip has no json
        else:
            current.video, current.ext = data, ext
    if current is not None:
        yield current
