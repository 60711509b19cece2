"""Atomic outputs: no partial file ever looks finished; modes follow the umask like any other file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from videoprep.errors import PathError

PART_SUFFIX = ".part"
T = TypeVar("T")


def part_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name a file is written under before it is verified and renamed."""
    p = Path(path)
    return p.with_name(p.name + PART_SUFFIX)


def make_temp_dir(final: str | os.PathLike[str]) -> Path:
    """A new hidden sibling folder `.NAME.XXXXXXXX.part` of `final`, mode 0777 & ~umask (as mkdir gives)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return _create_temp(final, folder=True)


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


def _create_temp(final: Path, *, folder: bool = False) -> Path:
    """Create a new hidden sibling `.NAME.XXXXXXXX.part`: an empty file (0666 & ~umask) or a folder (0777 & ~umask).

    Unlike mkstemp/mkdtemp (0600/0700), the kernel applies the process umask, as
    for any file the toolkit writes; the random part keeps writers on different
    hosts of a shared filesystem apart.
    """
    if folder:
        return _unique_sibling(final, lambda tmp: os.mkdir(tmp, 0o777))[0]
    tmp, fd = open_temp(final)
    os.close(fd)
    return tmp


def open_temp(final: Path) -> tuple[Path, int]:
    """Create a new hidden sibling file of `final` (0666 & ~umask); the path and its open write descriptor.

    The hot path of extraction: one open per file, where `atomic_path` opens it twice.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    return _unique_sibling(final, lambda tmp: os.open(tmp, flags, 0o666))


def _unique_sibling(final: Path, create: Callable[[Path], T]) -> tuple[Path, T]:
    """Create `.NAME.XXXXXXXX.part` beside `final` with `create`, drawing another name if it exists."""
    while True:
        tmp = final.with_name(f".{final.name}.{os.urandom(4).hex()}{PART_SUFFIX}")
        try:
            return tmp, create(tmp)
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(final)
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


def write_text_if_changed(path: str | os.PathLike[str], text: str) -> bool:
    """atomic_write_text unless the file already holds exactly `text` (a re-run rewrites nothing); True if written."""
    data = text.encode("utf-8")
    try:
        if os.path.getsize(path) == len(data) and Path(path).read_bytes() == data:
            return False
    except OSError:
        pass  # missing or unreadable: written below (its errors are the writer's)
    atomic_write_text(path, text)
    return True


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def move_file(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move one file so that it ends up in exactly one place: a rename on one filesystem;

    across filesystems a copy (fsynced, renamed into place), then the source's
    unlink, and the copy undone when that unlink fails. Raises PathError naming
    the source and why; after it the file is where it was.
    """
    source, dest = Path(source), Path(dest)
    try:
        os.rename(source, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise PathError(source, f"cannot move it to {dest}: {exc.strerror}") from None
    try:
        with atomic_path(dest) as tmp:
            shutil.copy2(source, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
    except OSError as exc:
        raise PathError(source, f"cannot copy it to {dest}: {exc.strerror}") from None
    try:
        os.unlink(source)
    except OSError as exc:
        os.unlink(dest)  # the file stays only where it was
        raise PathError(source, f"cannot move it to {dest}: {exc.strerror} (the copy was removed again)") from None
