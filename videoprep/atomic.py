"""Atomic outputs: no partial file ever looks finished; modes follow the umask like any other file."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PART_SUFFIX = ".part"


def part_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name a file is written under before it is verified and renamed."""
    p = Path(path)
    return p.with_name(p.name + PART_SUFFIX)


@functools.cache
def process_umask() -> int:
    """This process's umask (read once: setting it to read it back is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike[str], *, folder: bool = False) -> None:
    """Give a mkstemp/mkdtemp result (0600/0700) the mode a plain open/mkdir would have given it."""
    os.chmod(path, (0o777 if folder else 0o666) & ~process_umask())


def make_temp_dir(final: str | os.PathLike[str]) -> Path:
    """A hidden temporary sibling folder `.NAME.XXXX.part` of `final`, with umask-honouring mode."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=PART_SUFFIX, dir=final.parent))
    honour_umask(tmp, folder=True)
    return tmp


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces `path` (whole) only if the block succeeds."""
    final = Path(path)
    tmp = make_temp_dir(final)
    try:
        yield tmp
        if final.exists():  # a folder no journal knows of: replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=PART_SUFFIX, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    honour_umask(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text so that readers see the old file or the whole new one, never half."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
