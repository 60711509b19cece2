"""What a user sees when the mirror is dead or mistyped, run as the real `videoprep` process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.videoprep.httpfaults import make_kinetics_folder, serve_mirror

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


HEAVY = ("torch", "av", "pandas")


def heavy_imports(*args: str) -> list[str]:
    """Run the CLI with `args` in a fresh interpreter; the heavy modules it imported."""
    code = ("import sys\nfrom cli import cli\ntry:\n    cli(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    line = next(x for x in result.stdout.splitlines() if x.startswith("HEAVY"))
    return eval(line.removeprefix("HEAVY "))  # a list literal we printed ourselves


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    assert heavy_imports("--help") == []
    assert heavy_imports("download", "--help") == []
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a_000000_000010.mp4").write_bytes(b"clip")
    assert heavy_imports("fingerprint", str(tmp_path)) == []


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("uxsrc")
    make_kinetics_folder(root, per_class={"train": 2, "val": 1}, test_count=0, window=(0, 1), num_frames=10, fps=10)
    return root


def test_second_run_is_answered_from_the_completion_record(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "k400"
    with serve_mirror(source, tmp_path / "mirror", clips_per_part=3) as server:
        args = ("download", "kinetics400", "--out", str(out), "--base-url", server.url, "--split", "train,val")
        first = CliRunner().invoke(cli, list(args))
        assert first.exit_code == 0, first.output
        requests = len(server.log)
        assert (out / ".videoprep-download" / "complete.json").is_file()

        again = videoprep(*args)  # the real process: nothing heavy imported, no request made
        assert again.returncode == 0, again.stderr
        assert "nothing to do" in again.stderr and again.stdout.strip() == first.stdout.strip()
        assert len(server.log) == requests
        assert heavy_imports(*args) == []

        other = CliRunner().invoke(cli, [*args[:-1], "train"])  # other options: a real run (and a new record)
        assert other.exit_code == 0 and "nothing to do" not in other.stderr
        assert len(server.log) > requests

        clip = next((out / "train").glob("*.mp4"))
        clip.unlink()  # the tree changed: a real run checks again, and its report says so
        requests = len(server.log)
        checked = CliRunner().invoke(cli, list(args))
        assert "nothing to do" not in checked.stderr and len(server.log) > requests
        assert clip.stem in json.loads(Path(checked.stdout.strip()).read_text())["splits"]["train"]["missing"]
