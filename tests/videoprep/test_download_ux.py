"""What a user sees when the mirror is dead or mistyped, run as the real `videoprep` process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def videoprep(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-c", "from cli import cli; cli()", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def dead_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_one_line_after_visible_retries(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{dead_port()}/"
    result = videoprep("download", "kinetics400", "--out", str(tmp_path / "k"), "--base-url", url, "--split", "val")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("connection refused") == 7  # six retries shown at the default verbosity, then the error
    assert "retry 6/6" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "gave up after 7 attempts: connection refused" in last


def test_dry_run_asks_once(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{dead_port()}/"
    result = videoprep("download", "kinetics400", "--out", str(tmp_path / "k"), "--base-url", url, "--dry-run")
    assert result.returncode == 1 and "retry" not in result.stderr
    assert "gave up after 1 attempts" in result.stderr
    assert not (tmp_path / "k").exists()


def test_malformed_base_url_is_a_usage_error(tmp_path: Path) -> None:
    for bad in ("notaurl", "ftp://host/x", "http://", "http://host:99999/"):
        result = videoprep("download", "kinetics400", "--out", str(tmp_path / "k"), "--base-url", bad)
        assert result.returncode == 2, bad
        assert "Invalid value for --base-url" in result.stderr and "Traceback" not in result.stderr
