"""Bad inputs a new user trips on, through the real CLI: one line, the right exit status, nothing written, no hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.videoprep.helpers import write_tree

REPO = Path(__file__).resolve().parents[2]
SOURCES = {"train/a/one.mp4": (64, 48, 25, 12), "train/b/two.mp4": (48, 64, 25, 14)}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", SOURCES)


def videoprep(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """The CLI in a child process (a hang is a TimeoutExpired, not a stuck suite)."""
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)} | (env or {})
    return subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args], capture_output=True, text=True,
                          env=environ, timeout=timeout_s, cwd=REPO)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The only non-empty stderr line (asserted)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def tree(root: Path) -> list[str]:
    """Every path under root, hidden ones included (what a run created)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_command(stage: str, src: Path, out: Path) -> list[str]:
    if stage == "index":
        return ["index", str(src), "--out", str(out)]
    if stage == "validate":
        return ["validate", str(src), "--state-dir", str(out / "state"), "--report", str(out / "r.csv")]
    return [stage, str(src), str(out)]


# --- Ray -----------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stage", ["index", "validate", "transcode"])
def test_an_unreachable_ray_address_is_one_line_exit_2_and_creates_nothing(stage, src, tmp_path):
    before = tree(src)
    out = tmp_path / "out"
    address = f"127.0.0.1:{closed_port()}"
    result = videoprep(*stage_command(stage, src, out), "--executor", "ray", "--ray-address", address)
    assert result.returncode == 2
    line = one_line(result)
    assert "--ray-address" in line and "RAY_ADDRESS" in line and address in line
    assert not out.exists() and tree(src) == before  # no journal folder, no state


@pytest.mark.timeout(90)
def test_ray_address_from_the_environment_is_used_by_the_ray_executor(src, tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--executor", "ray",
                       env={"RAY_ADDRESS": address})
    assert result.returncode == 2 and address in one_line(result)  # the flag is absent: the variable is the address
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(90)
def test_ray_address_with_the_local_executor_names_the_flag_and_the_fix(src, tmp_path):
    result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--ray-address", "127.0.0.1:1")
    assert result.returncode == 2
    line = one_line(result)
    assert "--ray-address" in line and "--executor ray" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(90)
def test_a_port_that_never_answers_as_ray_gives_up_after_ray_timeout(src, tmp_path):
    with socket.socket() as listener:  # accepts TCP, never speaks Ray's protocol
        listener.bind(("0.0.0.0", 0))
        listener.listen(16)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--executor", "ray",
                           "--ray-address", address, "--ray-timeout", "3")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--ray-timeout" in errors[0] and "3 s" in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_executor_ray_joins_the_cluster_named_by_RAY_ADDRESS(src, tmp_path):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        summary = tmp_path / "summary.json"
        result = videoprep("index", str(src), "--out", str(tmp_path / "out"), "--executor", "ray",
                           "--summary-json", str(summary), env={"RAY_ADDRESS": cluster.address}, timeout_s=180)
        assert result.returncode == 0, result.stderr
        assert json.loads(summary.read_text())["executor"] == "ray"
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            from ray._private.state import jobs

            drivers = jobs()  # this test's driver, and the run's if it joined this cluster (not a Ray of its own)
            assert len(drivers) == 2, drivers
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()
