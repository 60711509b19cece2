"""A fresh machine has no ffmpeg on PATH: no test may shell out to a bare `ffmpeg` or `ffprobe`.

The conftest's PATH guard catches such a call when it runs; this test finds it in the source, so a
call on a path no test takes yet is caught too.
"""

from __future__ import annotations

import ast
import ctypes.util
import os
import subprocess
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
BARE = {"ffmpeg", "ffprobe"}
_RUNNERS = {"run", "Popen", "call", "check_call", "check_output", "system", "popen", "execvp", "execlp",
            "create_subprocess_exec", "create_subprocess_shell"}


def _names_bare_program(node: ast.expr) -> bool:
    """Is this argument a command that starts with a bare ffmpeg/ffprobe (list, tuple or shell string)?"""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        node = node.elts[0]
        return isinstance(node, ast.Constant) and node.value in BARE
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        words = node.value.split()
        return bool(words) and words[0] in BARE
    return False


def bare_ffmpeg_calls(source: str, filename: str = "<test>") -> list[str]:
    """'file:line' of every subprocess/os call in `source` whose command is a bare ffmpeg or ffprobe."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in _RUNNERS and node.args and _names_bare_program(node.args[0]):
            found.append(f"{filename}:{node.lineno}")
    return found


def test_the_scan_finds_a_bare_ffmpeg_in_every_form():
    snippet = (
        "import subprocess, os\n"
        "subprocess.run(['ffmpeg', '-i', 'a'], check=True)\n"
        "subprocess.Popen(('ffprobe', 'a'))\n"
        "os.system('ffmpeg -i a b')\n"
        "subprocess.run([exe, '-i', 'a'])\n"
        "subprocess.run(['python', 'ffmpeg'])\n"
    )
    assert bare_ffmpeg_calls(snippet) == ["<test>:2", "<test>:3", "<test>:4"]


def test_no_test_shells_out_to_a_bare_ffmpeg():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        found += bare_ffmpeg_calls(path.read_text(encoding="utf-8"), str(path.relative_to(TESTS.parent)))
    assert found == [], "run videoprep.ffmpeg.run_ffmpeg / ffmpeg_exe() instead of PATH's ffmpeg: " + ", ".join(found)


def _setup(venv: Path) -> str:
    """`make setup` into `venv` with every install step a no-op (`true`): the steps make would run."""
    proc = subprocess.run(["make", "-C", str(TESTS.parent), "setup", f"VENV={venv}", "PY=true", "BOOTSTRAP_PYTHON=true"],
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout


def test_setup_installs_again_when_ffmpegs_libraries_appear_or_go(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    found = ctypes.util.find_library("avcodec")
    libs = venv / ".ffmpeg-libs"
    libs.write_text("libavcodec: none\n" if found else "libavcodec: libavcodec.so.59\n")  # not today's answer
    stamp = venv / ".setup-stamp"
    stamp.touch()
    # set up after the Makefile and pyproject.toml were last changed, and after the libraries were looked for
    base = max(p.stat().st_mtime for p in (TESTS.parent / "Makefile", TESTS.parent / "pyproject.toml"))
    base = min(base + 1, time.time() - 2)
    os.utime(libs, (base, base))
    os.utime(stamp, (base + 1, base + 1))
    first = _setup(venv)
    assert "pip install" in first  # the answer changed since the last setup: everything is installed again
    assert stamp.stat().st_mtime > base + 1
    assert (venv / ".ffmpeg-libs").read_text() == f"libavcodec: {found or 'none'}\n"
    assert "pip install" not in _setup(venv)  # the same answer: nothing to do
