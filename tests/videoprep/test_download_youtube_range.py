"""YouTube route fetches only the clip: yt-dlp's range download through its generic extractor, bytes counted.

A 127.0.0.1 server with Range support (paced like a network link) serves a 60-s MP4; the route must read
about the 10-s window, not the whole file, and fall back to the whole file where ranges are refused;
either way the clip starts at the window's first frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.videoprep.httpfaults import Fault, FaultServer, serve_folder
from videoprep.download import DownloadConfig, run_download
from videoprep.ffmpeg import run_ffmpeg
from videoprep.probe import probe_video
from videoprep.synth import decode_all

DURATION_S, WINDOW = 60, (20, 30)
YTID = "rangevid001"
LINK_BYTES_S = 20_000_000  # a fast link; unpaced loopback would count whole socket buffers as "sent"


def make_source(path: Path, *, duration_s: int = DURATION_S, size: str = "160x120", noise: int = 20) -> Path:
    """A real H.264/AAC MP4, moov first (as YouTube serves), a keyframe every 2 s, ~uniform bitrate (`noise`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=44100", "-t", str(duration_s), "-vf", f"noise=alls={noise}:allf=t",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-shortest", "-movflags", "+faststart", str(path)], target=str(path))
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rangesrc")
    make_source(root / "videos" / f"{YTID}.mp4")
    (root / "annotations").mkdir()
    (root / "annotations" / "val.csv").write_text(
        f"label,youtube_id,time_start,time_end,split,is_cc\nabseiling,{YTID},{WINDOW[0]},{WINDOW[1]},val,0\n")
    return root


def _fetch(server: FaultServer, source: Path, out: Path):
    config = DownloadConfig(out_dir=out, source="youtube", splits=("val",), annotations_dir=source / "annotations",
                            url_template=server.url + "/videos/{youtube_id}.mp4", jobs=1, backoff_base_s=0.01,
                            backoff_max_s=0.1, timeout_s=30)
    return run_download(config)


def _small(frame: np.ndarray) -> np.ndarray:
    """8x8-pixel means: the picture without the per-frame noise."""
    h, w = (frame.shape[0] // 8) * 8, (frame.shape[1] // 8) * 8
    return frame[:h, :w].reshape(h // 8, 8, w // 8, 8, 3).mean(axis=(1, 3))


def _assert_clip(out: Path, source: Path) -> None:
    """10 s of 160x120 whose first frame is the source's frame at the window's start (not 1 s off)."""
    clip = out / "val" / "abseiling" / f"{YTID}_{WINDOW[0]:06d}_{WINDOW[1]:06d}.mp4"
    info = probe_video(clip)
    assert 245 <= info.frames <= 255 and (info.width, info.height) == (160, 120)
    first = _small(decode_all(clip)[0])
    frames = decode_all(source / "videos" / f"{YTID}.mp4")  # 25 fps
    error = {t: np.abs(first - _small(frames[int(t * 25)])).mean() for t in (WINDOW[0] - 1, WINDOW[0], WINDOW[0] + 1)}
    assert error[WINDOW[0]] < min(error[WINDOW[0] - 1], error[WINDOW[0] + 1]) / 2, error


def test_range_fetch_reads_about_the_window_not_the_video(source: Path, tmp_path: Path) -> None:
    video = source / "videos" / f"{YTID}.mp4"
    share = video.stat().st_size * (WINDOW[1] - WINDOW[0]) / DURATION_S  # the window's bytes in the source
    with serve_folder(source) as server:
        server.set_always(f"videos/{YTID}.mp4", Fault("slow", rate_bytes_s=LINK_BYTES_S))
        report = _fetch(server, source, tmp_path / "out")
        served = server.bytes_sent[f"/videos/{YTID}.mp4"]
    assert report.complete, report.as_dict()
    assert [c["fetch"] for c in report.clips] == ["range"]
    _assert_clip(tmp_path / "out", source)
    assert served <= 2 * share, f"{served} bytes served for a {share:.0f}-byte window of a {video.stat().st_size}-byte file"


def test_whole_file_fallback_where_ranges_are_refused(source: Path, tmp_path: Path) -> None:
    video = source / "videos" / f"{YTID}.mp4"
    with serve_folder(source) as server:
        server.set_always(f"videos/{YTID}.mp4", Fault("refuse_range", status=501))
        report = _fetch(server, source, tmp_path / "out")
        whole = [r for r in server.log if r.path == f"/videos/{YTID}.mp4" and r.range is None and r.status == 200]
    assert report.complete, report.as_dict()
    assert [c["fetch"] for c in report.clips] == ["whole"] and report.clips[0]["file_bytes"] == video.stat().st_size
    assert whole  # the file was read from its start, without a Range
    _assert_clip(tmp_path / "out", source)


def test_ctrl_c_stops_a_range_fetch_in_flight_and_the_rerun_completes(source: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal (SIGINT to the process group: videoprep and yt-dlp's ffmpeg) ends the run at once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[2]
    with serve_folder(source) as server:
        server.set_always(f"videos/{YTID}.mp4", Fault("slow", rate_bytes_s=20_000))  # ~10 minutes for the window
        cmd = [sys.executable, "-c", "import cli; cli.main()", "-q", "download", "kinetics400", "--out", str(out),
               "--source", "youtube", "--split", "val", "--annotations", str(source / "annotations"),
               "--url-template", server.url + "/videos/{youtube_id}.mp4", "--timeout", "900"]
        proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not any(r.range for r in server.requests_for(f"videos/{YTID}.mp4")):
                time.sleep(0.05)
            if proc.poll() is not None or not any(r.range for r in server.requests_for(f"videos/{YTID}.mp4")):
                pytest.skip("machine too slow: no range read had started after 90 s")
            os.killpg(proc.pid, signal.SIGINT)
            returncode = proc.wait(timeout=60)  # the window would take minutes to arrive
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert returncode != 0
        server.set_always(f"videos/{YTID}.mp4", None)
        report = _fetch(server, source, out)
    assert report.complete and [c["fetch"] for c in report.clips] == ["range"]
    _assert_clip(out, source)
