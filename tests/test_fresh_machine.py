"""A fresh machine has no ffmpeg on PATH: no test may shell out to a bare `ffmpeg` or `ffprobe`.

The conftest's PATH guard catches such a call when it runs; this test finds it in the source, so a
call on a path no test takes yet is caught too.
"""

from __future__ import annotations

import ast
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
