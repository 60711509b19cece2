"""The CLI in a child process, as a user runs it: a hang is a TimeoutExpired, and folders can be truly read-only."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def videoprep(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60,
              readonly: Sequence[Path] = ()) -> subprocess.CompletedProcess:
    """Run `videoprep ARGS`; `readonly` folders are bind-mounted read-only for it (a real EROFS, even as root)."""
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)} | (env or {})
    command = [sys.executable, "-c", "import cli; cli.main()", *args]
    if readonly:
        mounts = " && ".join(f"mount --bind {shlex.quote(str(d))} {shlex.quote(str(d))} && "
                             f"mount -o remount,ro,bind {shlex.quote(str(d))}" for d in readonly)
        command = ["unshare", "-m", "sh", "-c", f"{mounts} && exec {shlex.join(command)}"]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=timeout_s, cwd=REPO)


def can_mount_readonly(tmp: Path) -> bool:
    """Can this user make a read-only bind mount in a private mount namespace (root with CAP_SYS_ADMIN)?"""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {shlex.quote(str(tmp))} {shlex.quote(str(tmp))}"
                            f" && mount -o remount,ro,bind {shlex.quote(str(tmp))}"], capture_output=True)
    return probe.returncode == 0


def one_line(result: subprocess.CompletedProcess) -> str:
    """The only non-empty stderr line (asserted)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]
