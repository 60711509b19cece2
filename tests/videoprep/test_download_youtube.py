"""The YouTube route through --url-template against a real 127.0.0.1 server: yt-dlp + ffmpeg, with faults."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from yt_dlp.utils import DownloadError, ExtractorError

from cli import cli
from tests.videoprep.httpfaults import Fault, FaultServer, SourceClip, make_kinetics_folder, serve_folder
from videoprep.download import DownloadConfig, YoutubeAuth, run_download
from videoprep.download.http import RetryPolicy
from videoprep.download.youtube import AdaptiveLimiter, check_browser, classify_error
from videoprep.ffmpeg import select_ffmpeg
from videoprep.probe import probe_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[SourceClip]]]:
    """3-second real videos (10 fps) whose annotated window is [1, 2] s."""
    root = tmp_path_factory.mktemp("ytsrc")
    made = make_kinetics_folder(root, per_class={"train": 2, "val": 1}, test_count=1, window=(1, 2),
                                num_frames=30, fps=10)
    return root, made


@pytest.fixture
def youtube(tmp_path: Path, clips):
    """A server holding `videos/{youtube_id}.mp4` and `annotations/{split}.csv`."""
    src, made = clips
    www = tmp_path / "www"
    (www / "videos").mkdir(parents=True)
    shutil.copytree(src / "annotations", www / "annotations")
    for split_clips in made.values():
        for clip in split_clips:
            shutil.copyfile(clip.path, www / "videos" / f"{clip.youtube_id}.mp4")
    with serve_folder(www) as server:
        yield server


def _config(server: FaultServer, out: Path, **kw) -> DownloadConfig:
    return DownloadConfig(out_dir=out, source="youtube", base_url=server.url,
                          url_template=server.url + "/videos/{youtube_id}.mp4", jobs=2,
                          backoff_base_s=0.01, backoff_max_s=0.1, timeout_s=10, **kw)


def _dest(out: Path, clip: SourceClip) -> Path:
    return out / "test" / f"{clip.clip_id}.mp4" if clip.label is None else (
        out / clip.split / clip.label / f"{clip.clip_id}.mp4")


def test_youtube_route_with_404_429_and_corrupt_video(youtube: FaultServer, tmp_path: Path, clips) -> None:
    _, made = clips
    gone, throttled, corrupt = made["train"][0], made["train"][1], made["train"][2]
    (youtube.root / "videos" / f"{gone.youtube_id}.mp4").unlink()
    youtube.add_fault(f"videos/{throttled.youtube_id}.mp4", Fault("status", status=429, retry_after="0"),
                      Fault("status", status=429, retry_after="0"))
    (youtube.root / "videos" / f"{corrupt.youtube_id}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 5000)
    out = tmp_path / "k400"
    progress: list[tuple[int, int]] = []
    report = run_download(_config(youtube, out), on_progress=lambda d, t: progress.append((d, t)))

    kinds = {f.item: f.kind for f in report.failures}
    assert kinds == {gone.clip_id: "unavailable", corrupt.clip_id: "trim_failed"}
    for split_clips in made.values():
        for clip in split_clips:
            dest = _dest(out, clip)
            if clip in (gone, corrupt):
                assert not dest.exists() and not list(dest.parent.glob(f".{dest.name}*"))
                continue
            info = probe_video(dest)
            assert 9 <= info.frames <= 11 and (info.width, info.height) == (64, 48), clip.clip_id
    assert (out / "test" / f"{made['test'][0].clip_id}.mp4").exists()
    train = report.splits["train"]
    assert (train.expected, train.on_disk) == (4, 2)
    assert train.missing[gone.clip_id].startswith("unavailable: ")
    assert train.missing[corrupt.clip_id].startswith("trim_failed: ")
    assert any("HTTP 429 seen 2 time(s)" in n for n in report.notes)
    assert progress[-1] == (7, 7)
    assert (out / "annotations" / "train.csv").exists()
    pinned = select_ffmpeg()  # the clips were cut by the pinned ffmpeg, and the report says which
    assert report.ffmpeg == {"path": pinned.path, "version": pinned.version}


def test_rerun_skips_done_and_permanent_failures(youtube: FaultServer, tmp_path: Path, clips) -> None:
    _, made = clips
    gone = made["val"][0]
    video = youtube.root / "videos" / f"{gone.youtube_id}.mp4"
    kept = video.read_bytes()
    video.unlink()
    out = tmp_path / "k400"
    first = run_download(_config(youtube, out, splits=("val",)))
    assert [f.kind for f in first.failures] == ["unavailable"]
    youtube.log.clear()
    video.write_bytes(kept)  # back online, but a plain re-run does not ask again
    second = run_download(_config(youtube, out, splits=("val",)))
    assert not [r for r in youtube.log if r.path.startswith("/videos/")]
    assert second.splits["val"].missing[gone.clip_id].startswith("unavailable")
    assert any("--retry-failed" in n for n in second.notes)
    third = run_download(_config(youtube, out, splits=("val",), retry_failed=True))
    assert third.complete and third.fingerprint["count"] == 2
    assert {r.path for r in youtube.log if r.path.startswith("/videos/")} == {f"/videos/{gone.youtube_id}.mp4"}


def test_persistent_429_is_classified_throttled(youtube: FaultServer, tmp_path: Path, clips) -> None:
    _, made = clips
    clip = made["test"][0]
    youtube.set_always(f"videos/{clip.youtube_id}.mp4", Fault("status", status=429, retry_after="0"))
    report = run_download(_config(youtube, tmp_path / "k400", splits=("test",), retries=2))
    assert [(f.item, f.kind) for f in report.failures] == [(clip.clip_id, "throttled")]
    assert len(youtube.requests_for(f"videos/{clip.youtube_id}.mp4")) == 3
    assert any("concurrency went down to 1" in n for n in report.notes)


def test_classify_yt_dlp_errors_by_type_then_text() -> None:
    assert classify_error(DownloadError("x", (None, ExtractorError("Private video. Sign in", expected=True), None)))[0] == "private"
    assert classify_error(ExtractorError("This video has been removed by the uploader", expected=True))[0] == "removed"
    assert classify_error(ExtractorError("Video unavailable", expected=True))[0] == "unavailable"
    assert classify_error(ExtractorError("something odd", expected=True))[0] == "other"


def test_limiter_halves_on_429_and_recovers() -> None:
    limiter = AdaptiveLimiter(4, policy=RetryPolicy(backoff_base_s=0.0, backoff_max_s=0.0))
    for _ in range(3):
        limiter.acquire()
        limiter.release(throttled=True, retry_after_s=0)
    assert limiter.limit == 1 and limiter.min_limit_seen == 1 and limiter.throttle_events == 3
    for _ in range(16):
        limiter.acquire()
        limiter.release()
    assert limiter.limit == 3


def test_bot_check_is_its_own_failure_kind() -> None:
    for text in ("Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies",
                 "Sign in to confirm you're not a bot"):
        wrapped = DownloadError(f"ERROR: [youtube] abc: {text}", exc_info=(None, ExtractorError(text), None))
        assert classify_error(wrapped) == ("bot_check", None)
    assert classify_error(ExtractorError("Sign in to confirm your age"))[0] == "private"
    assert classify_error(ExtractorError("HTTP Error 429: Too Many Requests"))[0] == "throttled"


def test_cookies_reach_ytdlp(youtube: FaultServer, tmp_path: Path, clips) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tsession\tabc123\n")
    _, made = clips
    clip = made["test"][0]
    report = run_download(_config(youtube, tmp_path / "k400", splits=("test",), auth=YoutubeAuth(cookies=cookies)))
    assert report.complete, report.as_dict()
    sent = [r.cookie for r in youtube.requests_for(f"videos/{clip.youtube_id}.mp4")]
    # yt-dlp's own request (the extractor's) carries them; ffmpeg's range reads match cookie domains by
    # host name, so for a bare IP they go without (media URLs are signed and need none)
    assert sent[0] == "session=abc123"
    assert YoutubeAuth(cookies_from_browser="Firefox:work").ytdlp_options() == {
        "cookiesfrombrowser": ("firefox", "work", None, None)}
    assert check_browser("firefox") == "" and "not a browser" in check_browser("netscape4")


def test_cli_cookie_options_are_checked_first(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["download", "kinetics400", "--out", str(tmp_path / "k"), "--base-url", "http://127.0.0.1:9"]
    wrong_source = runner.invoke(cli, [*base, "--cookies-from-browser", "firefox"])
    assert wrong_source.exit_code == 2 and "for --source youtube" in wrong_source.output
    bad = runner.invoke(cli, [*base, "--source", "youtube", "--cookies-from-browser", "netscape4"])
    assert bad.exit_code == 2 and "--cookies-from-browser" in bad.output
    missing = runner.invoke(cli, [*base, "--source", "youtube", "--cookies", str(tmp_path / "none.txt")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
