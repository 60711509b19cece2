"""`videoprep shard`: pack a BAT list's videos into WebDataset tar shards and write the split's index.

Each clip becomes two tar members, `{key}.{ext}` (the video's bytes as they are, its own
extension) and `{key}.json` (list position, label, class name, frame_num, fps, width, height,
the source's list path and the sha256 of the bytes). The plan (which clip goes into which
`{split}-NNNNNN.tar`) is a pure function of the list, the file sizes, `shard_size` and the
shuffle seed; tar headers carry fixed mtime/uid/gid/names, so the same input gives
byte-identical tars.

Runs on the stage engine (`videoprep.stage`): one item per tar, written under a temporary
name and renamed when complete, journaled in `{out}/.videoprep/shard.jsonl`, so a killed run
re-run writes only the missing tars and `--shard I/N` writes a share of them. The plain run
writes `{out}/{split}.json`: shard names relative to that folder, clips and bytes of each,
clips per class.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoprep.atomic import atomic_write_json, open_temp
from videoprep.errors import PathError, VideoprepError
from videoprep.locations import check_output_dir, check_output_file
from videoprep.progress import ProgressFn, no_progress
from videoprep.records import ListRecord, read_class_map, read_list
from videoprep.stage import STATE_DIR, Item, StageOptions, StageRun, StageSpec, run_stage, write_summary

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the tar layout or the json fields change: every tar is rewritten
INDEX_FORMAT = "videoprep-webdataset"
DEFAULT_SHARD_SIZE = 1 << 30
SHARD_DIGITS = 6
TAR_MTIME = 946684800  # 2000-01-01: fixed, so the same input gives the same bytes
_BLOCK = 512
_JSON_ESTIMATE = 2 * _BLOCK  # header + a json body under 512 bytes
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """'1GiB' -> 1073741824, '500MB' -> 500000000, '4096' -> 4096 (bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise VideoprepError(f"size {text!r}: expected a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 1:
        raise VideoprepError(f"size {text!r} must be at least 1 byte")
    return size


def clip_key(list_path: str) -> str:
    """The WebDataset key of a clip: its list path without extension, dots made underscores (keys hold none)."""
    stem = os.path.splitext(list_path.replace(os.sep, "/"))[0]
    return stem.replace(".", "_")


def shard_name(split: str, number: int) -> str:
    """`train-000003.tar`."""
    return f"{split}-{number:0{SHARD_DIGITS}d}.tar"


def shard_pattern(split: str, count: int) -> str:
    """Brace notation for every shard of a split: `train-{000000..000041}.tar`."""
    if count == 1:
        return shard_name(split, 0)
    return f"{split}-{{{0:0{SHARD_DIGITS}d}..{count - 1:0{SHARD_DIGITS}d}}}.tar"


@dataclass(frozen=True)
class ClipEntry:
    """One clip to pack: its list entry, where the file is, and what the json records besides."""

    index: int  # position in the list (the file loader's sample index)
    path: str  # the list path (relative to the root)
    full: str
    key: str
    ext: str
    label: int
    class_name: str | None
    frame_num: int
    size: int
    mtime_ns: int
    fps: float | None = None  # from manifest.csv beside the list; probed when missing
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ShardTask:
    """One tar to write: its final path and its clips in order."""

    output: str
    clips: tuple[ClipEntry, ...]


@dataclass(frozen=True)
class ShardConfig(StageOptions):
    """One `videoprep shard LIST` run (the engine's options: `StageOptions`)."""

    list_file: Path
    root_path: Path
    out_dir: Path
    shard_size: int = DEFAULT_SHARD_SIZE
    shuffle: int | None = None  # seed of the clip order; None: list order
    split: str | None = None  # default: the list's file name without extension
    classes: Path | None = None  # default: classes.txt beside the list, if any
    fresh: bool = False

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise VideoprepError(f"shard_size ({self.shard_size}) must be >= 1 byte")
        if self.split is not None and not re.fullmatch(r"[A-Za-z0-9_]+", self.split):
            raise VideoprepError(f"split ({self.split!r}) must be letters, digits and underscores")

    @property
    def split_name(self) -> str:
        return self.split or re.sub(r"[^A-Za-z0-9_]", "_", Path(self.list_file).stem)


@dataclass
class ShardResult:
    """What a plain run wrote: the index, the tars and the clips that could not be packed."""

    index_path: Path | None
    shards: list[Path]
    clips: int
    bytes: int
    skipped: list[dict[str, str]]
    run: StageRun


def tar_estimate(size: int) -> int:
    """Bytes one clip adds to a tar: the video's header and padded body, and the json's."""
    return _BLOCK + -(-size // _BLOCK) * _BLOCK + _JSON_ESTIMATE


def plan_shards(clips: list[ClipEntry], *, shard_size: int, seed: int | None) -> list[list[ClipEntry]]:
    """Clips in list order (or shuffled by `seed`) cut into tars of at most `shard_size` bytes (pure).

    A clip larger than `shard_size` gets a tar of its own.
    """
    order = list(clips)
    if seed is not None:
        random.Random(seed).shuffle(order)
    shards: list[list[ClipEntry]] = []
    current: list[ClipEntry] = []
    used = 2 * _BLOCK * 10  # the end-of-archive blocks (tar pads to 10 KiB records)
    for clip in order:
        cost = tar_estimate(clip.size)
        if current and used + cost > shard_size:
            shards.append(current)
            current, used = [], 2 * _BLOCK * 10
        current.append(clip)
        used += cost
    if current:
        shards.append(current)
    return shards


def _manifest_facts(list_file: Path) -> dict[str, dict[str, str]]:
    """list path -> fps, width, height from manifest.csv beside the list (`videoprep index` writes it)."""
    manifest = list_file.parent / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, encoding="utf-8", newline="") as f:
        return {row["list_path"]: row for row in csv.DictReader(f) if row.get("status") == "ok"}


def _number(value: str | None, cast: type) -> Any:
    return cast(value) if value not in (None, "") else None


def read_clips(config: ShardConfig) -> tuple[list[ClipEntry], list[str] | None]:
    """Every list entry as a ClipEntry (stat'ed; a missing file is an error naming it) and the class names."""
    list_file = Path(config.list_file)
    records = read_list(list_file)
    classes_file = config.classes or list_file.parent / "classes.txt"
    classes = read_class_map(classes_file) if config.classes or classes_file.is_file() else None
    facts = _manifest_facts(list_file)
    clips, keys = [], {}
    for index, rec in enumerate(records):
        clips.append(_clip_entry(index, rec, config=config, classes=classes, facts=facts.get(rec.path, {})))
        other = keys.setdefault(clips[-1].key, rec.path)
        if other != rec.path or len(keys) != len(clips):
            raise PathError(list_file, f"entries {other!r} and {rec.path!r} map to the same shard key "
                            f"{clips[-1].key!r}; list each video once")
    return clips, classes


def _clip_entry(index: int, rec: ListRecord, *, config: ShardConfig, classes: list[str] | None,
                facts: dict[str, str]) -> ClipEntry:
    full = os.path.join(config.root_path, rec.path)
    try:
        st = os.stat(full)
    except OSError as exc:
        raise PathError(full, f"listed in {config.list_file} but cannot be read: {exc.strerror}; "
                        "check --root-path") from None
    if classes is not None and rec.label >= len(classes):
        raise PathError(config.list_file, f"label {rec.label} of {rec.path} is past the {len(classes)} classes")
    ext = os.path.splitext(rec.path)[1].lstrip(".").lower() or "mp4"
    return ClipEntry(
        index=index, path=rec.path, full=full, key=clip_key(rec.path), ext=ext, label=rec.label,
        class_name=classes[rec.label] if classes is not None else None, frame_num=rec.frame_num,
        size=st.st_size, mtime_ns=st.st_mtime_ns, fps=_number(facts.get("fps"), float),
        width=_number(facts.get("width"), int), height=_number(facts.get("height"), int),
    )


def _member(name: str, size: int) -> tarfile.TarInfo:
    """A tar header with nothing of this machine in it: fixed mtime, owner and mode."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, TAR_MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def clip_facts(clip: ClipEntry) -> tuple[float, int, int]:
    """(fps, width, height) of a clip: from the manifest, else probed (raises ProbeError)."""
    if clip.fps is not None and clip.width is not None and clip.height is not None:
        return clip.fps, clip.width, clip.height
    from videoprep.probe import probe_video  # av only when the manifest lacks the facts

    info = probe_video(clip.full)
    return info.fps, info.width, info.height


def clip_json(clip: ClipEntry, *, facts: tuple[float, int, int], sha256: str, size: int) -> bytes:
    """The `{key}.json` member of a clip."""
    fps, width, height = facts
    return json.dumps({"index": clip.index, "label": clip.label, "class": clip.class_name,
                       "frame_num": clip.frame_num, "fps": fps, "width": width, "height": height, "path": clip.path,
                       "sha256": sha256, "size": size}, sort_keys=True).encode()


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()  # releases the GIL: runs while the same bytes are written


def _header(name: str, size: int) -> bytes:
    """A member's GNU tar header (a long-name block first when the name needs one)."""
    return _member(name, size).tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _end_of_archive(written: int) -> bytes:
    """Two zero blocks, then zeros up to a whole 10 KiB record (what tarfile and GNU tar write)."""
    end = written + 2 * _BLOCK
    return bytes(2 * _BLOCK + (-end % tarfile.RECORDSIZE))


class _TarOut:
    """Appends members to an open tar file: header, bytes and padding in one writev, no copy of the bytes."""

    def __init__(self, fd: int) -> None:
        self.fd, self.written = fd, 0

    def add(self, name: str, data: bytes | memoryview) -> None:
        parts = [_header(name, len(data)), data, bytes(-len(data) % _BLOCK)]
        total = sum(len(p) for p in parts)
        done = os.writev(self.fd, parts)
        while done < total:  # a short write (rare): finish it piece by piece
            flat = memoryview(b"".join(parts))[done:]
            done += os.write(self.fd, flat)
        self.written += total

    def close(self) -> None:
        os.write(self.fd, _end_of_archive(self.written))


def _read_into(path: str, buffer: bytearray) -> memoryview:
    """The whole file in `buffer` (grown when too small): no fresh allocation, and so no page faults, per clip."""
    with open(path, "rb", buffering=0) as src:
        size = os.fstat(src.fileno()).st_size
        if len(buffer) < size + 1:
            buffer.extend(bytes(size + 1 - len(buffer)))
        view = memoryview(buffer)
        got = 0
        while (n := src.readinto(view[got:])) > 0:  # type: ignore[arg-type]
            got += n
            if got == len(buffer):
                raise PathError(path, "the file grew while it was read; run again")
    return view[:got]


def _add_clip(out: _TarOut, clip: ClipEntry, buffer: bytearray, hasher: ThreadPoolExecutor) -> str | None:
    """Append one clip's video and json members; the reason it was left out instead, if it was."""
    try:
        data = _read_into(clip.full, buffer)
        facts = clip_facts(clip)
    except (OSError, PathError) as exc:  # unreadable, grew while read, or not probeable
        return exc.reason if isinstance(exc, PathError) else f"cannot read: {exc.strerror}"
    digest = hasher.submit(_sha256, data)
    out.add(f"{clip.key}.{clip.ext}", data)
    out.add(f"{clip.key}.json", clip_json(clip, facts=facts, sha256=digest.result(), size=len(data)))
    return None


def write_shard(task: ShardTask) -> dict[str, Any]:
    """Worker: write one tar under a temporary name, rename it into place; its clips, bytes and skips."""
    final = Path(task.output)
    tmp, fd = open_temp(final)
    classes: Counter[str] = Counter()
    skipped = []
    buffer = bytearray(max((c.size for c in task.clips), default=0) + 1)
    try:
        out = _TarOut(fd)
        with ThreadPoolExecutor(1) as hasher:
            for clip in task.clips:
                reason = _add_clip(out, clip, buffer, hasher)
                if reason is not None:
                    skipped.append({"path": clip.path, "reason": reason})
                    log.warning("shard %s: %s left out: %s", final.name, clip.path, reason)
                    continue
                classes[clip.class_name if clip.class_name is not None else str(clip.label)] += 1
        out.close()
        os.close(fd)
        fd = -1
        os.replace(tmp, final)
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()
    return {"name": final.name, "clips": sum(classes.values()), "bytes": final.stat().st_size,
            "classes": dict(classes), "skipped": skipped}


def _stamp(clips: list[ClipEntry]) -> dict[str, Any]:
    """What decides a tar's bytes: every clip's entry and file stamp, and the format."""
    facts = json.dumps([vars(c) for c in clips], sort_keys=True, default=str)  # asdict deep-copies: 10x slower
    return {"format": FORMAT_VERSION, "clips": hashlib.sha256(facts.encode()).hexdigest()[:32]}


def _still_there(item: Item, entry: dict[str, Any]) -> bool:
    try:
        return item.output is not None and item.output.stat().st_size == entry.get("bytes")
    except OSError:
        return False


def run_shard(config: ShardConfig, *, on_progress: ProgressFn = no_progress) -> ShardResult:
    """Pack the list's videos into `{out}/{split}-NNNNNN.tar`; a plain run also writes `{out}/{split}.json`."""
    out = check_output_dir(config.out_dir, what="--out", source=None)
    if config.summary_json is not None:
        check_output_file(config.summary_json, what="--summary-json")
    clips, classes = read_clips(config)
    split = config.split_name
    planned = plan_shards(clips, shard_size=config.shard_size, seed=config.shuffle)
    out.mkdir(parents=True, exist_ok=True)
    items = [Item(key=shard_name(split, i), stamp=_stamp(group), output=out / shard_name(split, i),
                  task=ShardTask(str(out / shard_name(split, i)), tuple(group))) for i, group in enumerate(planned)]
    spec = StageSpec("shard", write_shard, None, still_valid=_still_there)
    run = run_stage(spec, items, state_dir=out / STATE_DIR, options=config, on_progress=on_progress,
                    sweep_root=out, fresh=config.fresh)
    write_summary(config.summary_json, run.summary())
    entries = [run.entries[item.key] for item in items if item.key in run.entries]
    skipped = [s for e in entries for s in e.get("skipped", [])]
    result = ShardResult(index_path=None, shards=[out / e["name"] for e in entries],
                         clips=sum(e["clips"] for e in entries), bytes=sum(e["bytes"] for e in entries),
                         skipped=skipped, run=run)
    if config.shard is None and len(entries) == len(items):
        result.index_path = out / f"{split}.json"
        atomic_write_json(result.index_path, shard_index(split, entries, classes=classes, clips=clips,
                                                         config=config))
        _warn_stale(out, split, len(items))
    return result


def shard_index(split: str, entries: list[dict[str, Any]], *, classes: list[str] | None,
                clips: list[ClipEntry], config: ShardConfig) -> dict[str, Any]:
    """The `{split}.json` record: shards (names relative to its folder), clips and bytes, clips per class."""
    per_class: Counter[str] = Counter()
    for entry in entries:
        per_class.update(entry["classes"])
    num_classes = len(classes) if classes is not None else max(c.label for c in clips) + 1
    return {
        "format": INDEX_FORMAT, "version": FORMAT_VERSION, "split": split,
        "pattern": shard_pattern(split, len(entries)),
        "shards": [{"name": e["name"], "clips": e["clips"], "bytes": e["bytes"]} for e in entries],
        "clips": sum(e["clips"] for e in entries), "bytes": sum(e["bytes"] for e in entries),
        "num_classes": num_classes, "classes": classes, "clips_per_class": dict(sorted(per_class.items())),
        "skipped": [s for e in entries for s in e.get("skipped", [])],
        "shuffle": config.shuffle, "shard_size": config.shard_size,
    }


def _warn_stale(out: Path, split: str, count: int) -> None:
    """Tars of this split numbered past this plan (an earlier, larger plan) are not in the index: say so."""
    pattern = re.compile(rf"^{re.escape(split)}-(\d{{{SHARD_DIGITS}}})\.tar$")
    stale = sorted(p.name for p in out.iterdir() if (m := pattern.match(p.name)) and int(m.group(1)) >= count)
    if stale:
        log.warning("%s: %d tar(s) from an earlier run are not part of %s.json (e.g. %s); delete them",
                    out, len(stale), split, stale[0])
