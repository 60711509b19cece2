"""The mirror route end to end against a real 127.0.0.1 mirror made by pack_mirror from real videos."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.races import signal_mid_run
from tests.videoprep.httpfaults import (
    Fault,
    FaultServer,
    SourceClip,
    make_kinetics_folder,
    serve_folder,
    serve_mirror,
)
from videoprep.download import STATE_DIRNAME, DownloadConfig, run_download, safe_extract
from videoprep.download.mirror import archive_format
from videoprep.errors import PathError, VideoprepError
from videoprep.fingerprint import content_fingerprint, hash_folder
from videoprep.stage import read_journal
from videoprep.synth import pack_mirror, write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[SourceClip]]]:
    """One small Kinetics-like dataset (10 real H.264 clips) shared by the tests of this module."""
    root = tmp_path_factory.mktemp("k400src")
    clips = make_kinetics_folder(root)
    fixed = root / "replacements"
    fixed.mkdir()
    # a re-encoded copy of one train clip: different bytes under the same clip id
    write_video(fixed / f"{clips['train'][1].clip_id}.mp4", num_frames=12, seed=99)
    return root, clips


@pytest.fixture
def mirror(tmp_path: Path, source):
    """A served mirror: 2 clips per part, part_1 a plain tar, three inner path styles, a replacement."""
    src_root, _ = source
    with serve_mirror(src_root, tmp_path / "mirror", clips_per_part=2, plain_tar_parts={1},
                      member_prefixes=("{split}/", "", "k400/{split}/"),
                      replacements_dir=src_root / "replacements") as server:
        yield server


def _config(server: FaultServer, out: Path, **kw) -> DownloadConfig:
    return DownloadConfig(out_dir=out, base_url=server.url, jobs=2, backoff_base_s=0.01, backoff_max_s=0.1,
                          timeout_s=10, **kw)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expected_bytes(source, clip: SourceClip) -> str:
    src_root, clips = source
    fixed = src_root / "replacements" / f"{clip.clip_id}.mp4"
    return _sha(fixed if fixed.exists() else clip.path)


def _assert_complete(out: Path, source, splits=("train", "val", "test")) -> None:
    _, clips = source
    for split in splits:
        names = sorted(p.name for p in (out / split).iterdir())
        assert names == sorted(f"{c.clip_id}.mp4" for c in clips[split])
        for clip in clips[split]:
            assert _sha(out / split / f"{clip.clip_id}.mp4") == _expected_bytes(source, clip), clip.clip_id


def test_mirror_with_faults_ends_complete_and_correct(mirror: FaultServer, tmp_path: Path, source) -> None:
    mirror.add_fault("train/part_0.tar.gz", Fault("status", status=500), Fault("drop", after_bytes=3000),
                     Fault("status", status=429, retry_after="0"))
    mirror.add_fault("train/part_1.tar.gz", Fault("long_length", extra_bytes=500))
    mirror.add_fault("val/part_0.tar.gz", Fault("status", status=503), Fault("drop", after_bytes=10))
    out = tmp_path / "k400"
    seen: list[tuple[int, int]] = []
    report = run_download(_config(mirror, out), on_progress=lambda d, t: seen.append((d, t)))

    _assert_complete(out, source)
    assert report.complete and not report.failures
    assert {s: (r.expected, r.on_disk) for s, r in report.splits.items()} == {
        "train": (6, 6), "val": (2, 2), "test": (2, 2)}
    for split in ("train", "val", "test"):
        assert (out / "annotations" / f"{split}.csv").read_bytes() == (
            mirror.root / "annotations" / f"{split}.csv").read_bytes()
    # the resumed request picked up where the dropped one stopped
    ranges = [r.range for r in mirror.requests_for("train/part_0.tar.gz")]
    assert "bytes=3000-" in ranges
    # archives are deleted after verified extraction; nothing temporary is left next to the clips
    assert not list((out / STATE_DIRNAME / "archives").rglob("*.tar.gz"))
    assert not [p for p in out.rglob(".*") if p.is_file() and STATE_DIRNAME not in p.parts]
    # progress is in bytes and reaches the total
    assert seen[-1][0] == seen[-1][1] and seen[-1][1] > 50_000
    written = json.loads((out / "download_report.json").read_text())
    assert written["complete"] and written["fingerprint"] == report.fingerprint
    # every clip's bytes were hashed while extracted: the report's sha256 is the file's
    assert len(written["clips"]) == 10 and set(written["clips"][0]) == {"id", "split", "size", "sha256"}
    for record in written["clips"]:
        clip = out / record["split"] / f"{record['id']}.mp4"
        assert (record["size"], record["sha256"]) == (clip.stat().st_size, _sha(clip))
    # the report's content fingerprint is what hashing the folder's files gives (`videoprep fingerprint`)
    assert written["fingerprint"]["content_sha256"] == content_fingerprint(hash_folder(out))
    assert report.fingerprint["splits"]["train"]["count"] == 6
    assert any("1 clip(s) replaced" in n for n in report.notes)


def test_plain_tar_named_tar_gz_is_detected_by_magic(mirror: FaultServer) -> None:
    parts = mirror.packed.parts["train"]
    assert [archive_format(p) for p in parts] == ["gz", "tar", "gz"]
    assert all(p.name.endswith(".tar.gz") for p in parts)


def test_rerun_does_no_finished_work_and_fingerprint_is_stable(mirror: FaultServer, tmp_path: Path) -> None:
    out = tmp_path / "k400"
    first = run_download(_config(mirror, out))
    mirror.log.clear()
    second = run_download(_config(mirror, out))
    part_gets = [r for r in mirror.log if r.path.endswith(".tar.gz") or r.path.endswith(".tgz")]
    assert [r for r in part_gets if r.method == "GET"] == []
    assert second.fingerprint == first.fingerprint and second.complete


def test_keep_archives_keeps_verified_tarballs(mirror: FaultServer, tmp_path: Path) -> None:
    out = tmp_path / "k400"
    run_download(_config(mirror, out, splits=("val",), keep_archives=True))
    kept = out / STATE_DIRNAME / "archives" / "val" / "part_0.tar.gz"
    assert kept.read_bytes() == (mirror.root / "val" / "part_0.tar.gz").read_bytes()


def test_corrupt_part_is_a_reported_failure_then_fixed_by_rerun(mirror: FaultServer, tmp_path: Path,
                                                                 source) -> None:
    # the server cuts the body and lies about its length consistently, so the size check passes:
    # extraction must catch it, keep no half clip, and leave the part for the next run
    mirror.set_always("train/part_2.tar.gz", Fault("short_length", extra_bytes=4000))
    out = tmp_path / "k400"
    cfg = _config(mirror, out, splits=("train",))
    report = run_download(cfg)
    assert [(f.kind, f.split) for f in report.failures] == [("extract", "train")]
    assert "corrupt or truncated archive" in report.failures[0].reason
    missing = report.splits["train"].missing
    assert missing and all("part(s) of train failed or unfinished" in r for r in missing.values())
    for video in (out / "train").iterdir():  # whatever is there is whole
        clip = next(c for c in source[1]["train"] if c.clip_id == video.stem)
        assert _sha(video) == _expected_bytes(source, clip)
    mirror.set_always("train/part_2.tar.gz", None)
    again = run_download(cfg)
    assert again.complete
    _assert_complete(out, source, splits=("train",))


def test_replacement_wins_over_a_part_extracted_in_a_later_run(mirror: FaultServer, tmp_path: Path,
                                                                source) -> None:
    fixed_clip = source[1]["train"][1]  # lives in train/part_0
    mirror.set_always("train/part_0.tar.gz", Fault("status", status=500))
    out = tmp_path / "k400"
    cfg = _config(mirror, out, splits=("train",), retries=1)
    first = run_download(cfg)
    assert [f.kind for f in first.failures] == ["download"]
    mirror.set_always("train/part_0.tar.gz", None)
    second = run_download(cfg)
    assert _sha(out / "train" / f"{fixed_clip.clip_id}.mp4") == _sha(
        source[0] / "replacements" / f"{fixed_clip.clip_id}.mp4")
    hashes = {r["id"]: r["sha256"] for r in second.clips}  # the replacement's bytes, not the archived ones
    assert hashes[fixed_clip.clip_id] == _sha(out / "train" / f"{fixed_clip.clip_id}.mp4")


def test_filters_keep_selected_clips_and_class_view_links_them(mirror: FaultServer, tmp_path: Path,
                                                               source) -> None:
    out = tmp_path / "k400"
    label = "passing American football (in game)"
    report = run_download(_config(mirror, out, splits=("train", "val"), classes=(label,), limit_per_class=2,
                                  class_folders=True))
    wanted = [c for c in source[1]["train"] if c.label == label][:2]
    assert sorted(p.stem for p in (out / "train").iterdir()) == sorted(c.clip_id for c in wanted)
    assert report.splits["train"].expected == 2 and report.complete
    linked = sorted((out / "by_class" / "train" / label).iterdir())
    assert [p.stem for p in linked] == sorted(c.clip_id for c in wanted)
    assert all(p.is_symlink() and p.resolve() == (out / "train" / p.name).resolve() for p in linked)
    assert (out / "by_class" / "annotations" / "train.csv").exists()


def test_unknown_class_is_refused_with_a_hint(mirror: FaultServer, tmp_path: Path) -> None:
    with pytest.raises(VideoprepError, match="did you mean 'abseiling'"):
        run_download(_config(mirror, tmp_path / "k400", splits=("train",), classes=("abseilling",)))


def test_dry_run_plans_with_sizes_and_writes_nothing(mirror: FaultServer, tmp_path: Path) -> None:
    out = tmp_path / "k400"
    report = run_download(_config(mirror, out, dry_run=True))
    assert not out.exists()
    parts = [f for f in report.plan if f.url.endswith(".tar.gz")]
    assert len(parts) == 5
    for planned in parts:
        local = mirror.root / planned.url.removeprefix(mirror.url + "/")
        assert planned.size_bytes == local.stat().st_size
    assert not [r for r in mirror.log if r.method == "GET" and r.path.endswith(".gz")]


def _evil_tar(path: Path, good_video: Path) -> None:
    """A .tar.gz whose members try to escape or are not plain files, plus one good clip."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(good_video, arcname=f"train/{good_video.name}")
        data = good_video.read_bytes()
        for name in ("../evil_000000_000010.mp4", "/tmp/abs_00000_000000_000010.mp4",
                     "train/../../up_0000000_000000_000010.mp4"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for kind, name in ((tarfile.SYMTYPE, "train/link_000000_000000_000010.mp4"),
                           (tarfile.LNKTYPE, "train/hard_000000_000000_000010.mp4"),
                           (tarfile.FIFOTYPE, "train/fifo.mp4"), (tarfile.CHRTYPE, "train/dev.mp4")):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd"
            tar.addfile(info)


def test_safe_extract_refuses_unsafe_members(tmp_path: Path, make_video) -> None:
    good = make_video("src/goodclip000_000000_000010.mp4", num_frames=10)
    archive = tmp_path / "evil.tar.gz"
    _evil_tar(archive, good)
    dest = tmp_path / "jail" / "train"
    result = safe_extract(archive, dest_dir=dest)
    assert result.written == [good.stem]
    assert sorted(os.listdir(dest)) == [good.name]
    assert sorted(os.listdir(tmp_path / "jail")) == ["train"]
    assert not (tmp_path / "evil_000000_000010.mp4").exists()
    reasons = {r.member: r.reason for r in result.rejected}
    assert reasons["../evil_000000_000010.mp4"] == "path escapes the destination (..)"
    assert reasons["/tmp/abs_00000_000000_000010.mp4"] == "absolute path"
    assert reasons["train/link_000000_000000_000010.mp4"] == "symbolic link to '/etc/passwd'"
    assert reasons["train/hard_000000_000000_000010.mp4"] == "hard link to '/etc/passwd'"
    assert reasons["train/fifo.mp4"] == "fifo" and reasons["train/dev.mp4"] == "device file"


def test_malicious_part_in_a_mirror_is_reported_not_fatal(mirror: FaultServer, tmp_path: Path, source) -> None:
    part = mirror.root / "val" / "part_0.tar.gz"
    good = source[1]["val"][0]
    _evil_tar(part, good.path)
    out = tmp_path / "k400"
    report = run_download(_config(mirror, out, splits=("val",)))
    assert sorted(os.listdir(out / "val")) == [f"{good.clip_id}.mp4"]
    assert not list(tmp_path.glob("evil*")) and not list(out.glob("evil*"))
    entry = [json.loads(line) for line in (out / STATE_DIRNAME / "extract.jsonl").read_text().splitlines()
             if '"part"' in line][0]
    assert len(entry["rejected"]) == 7
    missing = report.splits["val"].missing
    assert missing == {source[1]["val"][1].clip_id: "not in the mirror's archives"}


def test_not_a_tar_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "part_9.tar.gz"
    junk.write_bytes(b"<html>Access Denied</html>" * 40)
    with pytest.raises(PathError, match="not a tar archive"):
        safe_extract(junk, dest_dir=tmp_path / "x")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_download_resumes(mirror: FaultServer, tmp_path: Path, source, sig: signal.Signals) -> None:
    """A real `videoprep download` process killed (SIGKILL) or interrupted (SIGINT) mid-transfer resumes.

    Part 1 is throttled to take about ten minutes, so the signal always lands mid-transfer.
    """
    slow = "train/part_1.tar.gz"
    size = (mirror.root / slow).stat().st_size
    mirror.set_always(slow, Fault("slow", rate_bytes_s=max(50, size // 600)))
    out = tmp_path / "k400"
    partial = out / STATE_DIRNAME / "archives" / "train" / "part_1.tar.gz.part"
    cmd = [sys.executable, "-c", "import cli; cli.main()", "-q", "download", "kinetics400", "--out", str(out),
           "--base-url", mirror.url, "--split", "train", "-j", "3", "--backoff", "0.01", "--timeout", "900"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Ctrl-C must stop the transfers promptly (wait_s), not finish them
    returncode = signal_mid_run(proc, lambda: partial.exists() and partial.stat().st_size > 1000,
                                what="download interrupted mid-transfer", timeout_s=30, sig=sig, wait_s=10)
    assert returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 1)
    had = partial.stat().st_size
    assert 0 < had < size
    assert not (out / "download_report.json").exists()
    mirror.set_always(slow, None)
    report = run_download(_config(mirror, out, splits=("train",)))
    assert report.complete
    _assert_complete(out, source, splits=("train",))
    resumed = [r.range for r in mirror.requests_for(slow)][-1]
    assert resumed is not None and int(resumed.removeprefix("bytes=").rstrip("-")) >= had


def test_a_part_is_extracted_while_the_next_downloads(mirror: FaultServer, tmp_path: Path) -> None:
    """Extraction overlaps the transfers: part 0 is extracted, journaled and its archive deleted while part 1
    is still arriving (so a Ctrl-C then keeps part 0, and the disk holds one copy of it).

    Part 1 is throttled to take about ten minutes, so the only way to miss the 90 s deadline is an
    extraction that waits for it; a machine too slow to even start part 1 by then skips.
    """
    slow = "train/part_1.tar.gz"
    # part 1 takes minutes (4 KB every 20 s or slower), so "still downloading" holds however slow the machine
    mirror.set_always(slow, Fault("slow", rate_bytes_s=max(200, (mirror.root / slow).stat().st_size // 600)))
    out = tmp_path / "k400"
    state = out / STATE_DIRNAME
    partial = state / "archives" / "train" / "part_1.tar.gz.part"
    first = [out / "train" / f"{clip}.mp4" for clip in mirror.packed.part_clips["train"][0]]
    journal = state / "extract.jsonl"

    def part_0_done() -> bool:
        journaled = journal.exists() and any(e["url"].endswith("/train/part_0.tar.gz") for e in read_journal(journal))
        return journaled and all(p.exists() for p in first)

    cmd = [sys.executable, "-c", "import cli; cli.main()", "-q", "download", "kinetics400", "--out", str(out),
           "--base-url", mirror.url, "--split", "train", "-j", "2", "--timeout", "900"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not part_0_done():
            time.sleep(0.02)
        extracted = part_0_done()
        still_downloading = partial.exists() and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    if not extracted and not partial.exists():
        pytest.skip("machine too slow: part 1's transfer had not started after 90 s, so there was no race to see")
    assert extracted, "part 0 was not extracted and journaled while part 1 downloaded"
    assert still_downloading, "part 0 was extracted only after part 1 had downloaded"
    assert not (state / "archives" / "train" / "part_0.tar.gz").exists()


def test_stale_temp_files_of_a_killed_extraction_are_removed(mirror: FaultServer, tmp_path: Path) -> None:
    out = tmp_path / "k400"
    (out / "val").mkdir(parents=True)
    stale = out / "val" / ".va000000abc_000010_000020.mp4.x1y2.part"
    stale.write_bytes(b"half")
    run_download(_config(mirror, out, splits=("val",)))
    assert not stale.exists()


def test_pack_mirror_layout(mirror: FaultServer) -> None:
    root = mirror.root
    urls = (root / "train" / "k400_train_path.txt").read_text().split()
    assert urls == [f"{mirror.url}/train/part_{i}.tar.gz" for i in range(3)]
    with tarfile.open(root / "train" / "part_2.tar.gz") as tar:
        assert all(n.startswith("k400/train/") for n in tar.getnames())
    with tarfile.open(root / "replacement_for_corrupted_k400.tgz") as tar:
        assert len(tar.getnames()) == 1


def test_url_list_lines_resolve_and_cvdf_urls_follow_the_base_url() -> None:
    from videoprep.download.mirror import CVDF_BASE_URL, parse_url_list

    text = f"# parts\n{CVDF_BASE_URL}/train/part_0.tar.gz\n\npart_1.tar.gz\nhttp://elsewhere/x/part_2.tar.gz\n"
    got = parse_url_list(text, list_url="http://copy:8000/k400/train/k400_train_path.txt",
                         base_url="http://copy:8000/k400")
    assert got == ["http://copy:8000/k400/train/part_0.tar.gz", "http://copy:8000/k400/train/part_1.tar.gz",
                   "http://elsewhere/x/part_2.tar.gz"]
    assert parse_url_list(text, list_url=f"{CVDF_BASE_URL}/train/k400_train_path.txt")[0] == (
        f"{CVDF_BASE_URL}/train/part_0.tar.gz")


def test_empty_and_unannotated_files_are_reported(tmp_path: Path, source) -> None:
    src_root, clips = source
    videos = tmp_path / "videos" / "val"
    videos.mkdir(parents=True)
    empty, whole = clips["val"]
    (videos / empty.path.name).write_bytes(b"")  # the mirror has some 0-byte clips
    (videos / whole.path.name).write_bytes(whole.path.read_bytes())
    (videos / "zz_stray_clip_000000_000010.mp4").write_bytes(whole.path.read_bytes())
    with serve_folder(tmp_path / "mirror") as server:
        pack_mirror(videos_dir=tmp_path / "videos", annotations_dir=src_root / "annotations",
                    out_dir=tmp_path / "mirror", base_url=server.url, splits=("val",))
        report = run_download(_config(server, tmp_path / "k400", splits=("val",)))
    val = report.splits["val"]
    assert (val.expected, val.on_disk, val.extra) == (2, 1, 1)
    assert val.missing == {empty.clip_id: "empty file (0 bytes)"}
    assert not report.complete and report.fingerprint["splits"]["val"]["count"] == 2
