"""Check every output location before any work (a stage's or a runner's): creatable, the right kind, writable, outside SRC.

Each failure is one OutputLocationError line naming the option, the reason and the fix; the CLI exits 2 on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from videoprep.errors import OutputLocationError


def _first_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing ancestor must be a writable folder, so everything below can be made."""
    anchor = _first_existing(path.parent)
    if not anchor.is_dir():
        raise OutputLocationError(path, f"{what} cannot be created: {anchor} is a file, not a folder; pass another {what}")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise OutputLocationError(path, f"{what} cannot be created: {anchor} is not writable; pass another {what}")


def _check_outside(path: Path, source: Path | None, what: str) -> None:
    if source is None:
        return
    src = source.resolve()
    if path == src:
        raise OutputLocationError(path, f"{what} must differ from the source folder {src}")
    if src in path.parents:
        raise OutputLocationError(path, f"{what} is inside the source folder {src}: pick a place outside it")


def check_output_dir(path: str | os.PathLike[str], *, what: str, source: Path | None = None) -> Path:
    """The absolute output folder, checked: a folder (or creatable), writable, not SRC or inside it."""
    out = Path(path).resolve()
    _check_outside(out, source, what)
    if os.path.lexists(out):
        if not out.is_dir():
            raise OutputLocationError(out, f"{what} is a file, not a folder; pass another {what}")
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputLocationError(out, f"{what} is not writable; fix its permissions or pass another {what}")
    else:
        _check_creatable(out, what)
    return out


def check_output_file(path: str | os.PathLike[str], *, what: str, source: Path | None = None) -> Path:
    """The absolute output file, checked: not a folder, its folder creatable and writable, not inside SRC."""
    out = Path(path).resolve()
    _check_outside(out, source, what)
    if out.is_dir():
        raise OutputLocationError(out, f"{what} is a folder, not a file; pass a file path to {what}")
    if os.path.lexists(out.parent):
        if not out.parent.is_dir():
            raise OutputLocationError(out, f"{what} cannot be created: {out.parent} is a file, not a folder; pass another {what}")
        if not os.access(out.parent, os.W_OK | os.X_OK):
            raise OutputLocationError(out, f"{what} cannot be written: {out.parent} is not writable; pass another {what}")
    else:
        _check_creatable(out.parent, what)
    return out


def check_source_writable(source: str | os.PathLike[str], *, what: str) -> None:
    """`what` moves files out of the source folder: it must be writable (checked before any work)."""
    if not os.access(source, os.W_OK | os.X_OK):
        raise OutputLocationError(source, f"{what} moves files out of this folder, but it is not writable "
                                          f"(a read-only disk or mount?); drop {what} or validate a writable copy")
