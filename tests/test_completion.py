"""Shell completion, as docs/commands.md tells users to set it up, really completes commands and options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _complete(**env: str) -> str:
    run = subprocess.run([sys.executable, "-c", "import cli; cli.main()"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=60, check=True)
    return run.stdout


def test_bash_source_prints_the_completion_function():
    script = _complete(_VIDEOPREP_COMPLETE="bash_source")
    assert "complete -o nosort -F _videoprep_completion videoprep" in script


def test_bash_completes_commands_and_options():
    commands = _complete(_VIDEOPREP_COMPLETE="bash_complete", COMP_WORDS="videoprep tra", COMP_CWORD="1")
    assert set(commands.split()) == {"plain,train", "plain,transcode"}
    options = _complete(_VIDEOPREP_COMPLETE="bash_complete", COMP_WORDS="videoprep bench --seq", COMP_CWORD="2")
    assert options.split() == ["plain,--seq-length"]
