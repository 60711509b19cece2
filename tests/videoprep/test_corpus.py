"""Every stage over the real-world corpus (videos from Debian packages and PyPI wheels): verdicts and frame counts
checked against the truth of a full decode."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from videoprep.corpus import DERIVED, PACKAGED, Corpus, CorpusFetchError, build_corpus
from videoprep.formats import VIDEO_EXTENSIONS

VFR_AVIS = ("tree.avi", "vtest_vfr.avi")  # variable frame rate, zero-size drop chunks


def test_every_corpus_file_names_its_package_or_origin() -> None:
    """Each packaged file names package, version, path and license; each derived one an origin made before it."""
    names = [f.name for f in PACKAGED]
    for f in PACKAGED:
        assert f.kind in ("deb", "wheel") and f.package and f.version and f.member and f.license, f
    for d in DERIVED:
        assert d.origin in names, f"{d.name}: its origin {d.origin} is not made before it"
        assert d.note, d.name
        names.append(d.name)
    assert len(set(names)) == len(names), "two corpus files share a name"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    try:
        return build_corpus()
    except CorpusFetchError as exc:
        pytest.skip(f"the real-world corpus cannot be fetched here: {exc}")


@dataclass
class Verdicts:
    """What each stage made of each corpus file: 'usable' or the refusal, and the frames it counted."""

    stage: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> name -> verdict
    index_frames: dict[str, int] = field(default_factory=dict)
    jpeg_frames: dict[str, int] = field(default_factory=dict)


def _videoprep(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (this checkout's code first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "import cli; cli.main()", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode in (0, 1), f"videoprep {args[0]} crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc


def _name(relpath: str) -> str:
    return relpath.split("/", 1)[1]


def _failures(report: Path) -> dict[str, str]:
    """transcode/frames report: source name -> error."""
    data = json.loads(report.read_text(encoding="utf-8"))
    return {_name(f["source"]): f["error"] for f in data["failures"]}


@pytest.fixture(scope="module")
def verdicts(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Verdicts:
    """Run validate, index, transcode and frames once over the corpus's videos (one label folder)."""
    root = tmp_path_factory.mktemp("corpus")
    src = root / "src"
    (src / "corpus").mkdir(parents=True)
    names = [n for n in corpus.truths if n.lower().endswith(VIDEO_EXTENSIONS)]
    for name in names:
        (src / "corpus" / name).symlink_to(corpus.path(name))
    out = Verdicts()
    _videoprep("validate", str(src), "--full", "--min-frames", "1", "--report", str(root / "validate.json"),
               "--allow-bad", "--state-dir", str(root / "vstate"))
    bad = json.loads((root / "validate.json").read_text(encoding="utf-8"))["bad"]
    unusable = {_name(b["relpath"]): f"{b['reason']}: {b['message']}" for b in bad if b["finding_class"] == "unusable"}
    out.stage["validate"] = {n: unusable.get(n, "usable") for n in names}
    _videoprep("index", str(src), "--out", str(root / "index"), "--safe-dir", str(root / "safe"))
    with open(root / "index" / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = {_name(r["relpath"]): r for r in csv.DictReader(f)}
    out.stage["index"] = {n: "usable" if rows[n]["status"] == "ok" else rows[n]["reason"] for n in names}
    out.index_frames = {n: int(r["frames"]) for n, r in rows.items() if r["status"] == "ok"}
    for stage in ("transcode", "frames"):
        dst = root / stage
        _videoprep(stage, str(src), str(dst), "-j", "2")
        failed = _failures(dst / f"{stage}_report.json")
        out.stage[stage] = {n: failed.get(n, "usable") for n in names}
    with open(root / "frames" / "mapping.csv", newline="", encoding="utf-8") as f:
        outputs = {_name(r["source"]): root / "frames" / r["output"] for r in csv.DictReader(f)}
    out.jpeg_frames = {n: len(list(p.glob("img_*.jpg"))) for n, p in outputs.items() if p.is_dir()}
    return out


def _expected(corpus: Corpus, name: str) -> str:
    return "usable" if corpus.truths[name].usable else "refused"


def _verdict(text: str) -> str:
    return "usable" if text == "usable" else "refused"


@pytest.mark.slow
def test_every_stage_gives_each_file_the_truths_verdict(corpus: Corpus, verdicts: Verdicts) -> None:
    """validate, index, transcode and frames accept exactly the files that decode completely, and refuse the rest."""
    wrong = [f"{stage}: {name}: expected {_expected(corpus, name)}, got {text}"
             for stage, by_name in verdicts.stage.items() for name, text in sorted(by_name.items())
             if _verdict(text) != _expected(corpus, name)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_no_variable_frame_rate_avi_is_refused(corpus: Corpus, verdicts: Verdicts) -> None:
    """AVIs whose drop chunks make the header's frame count larger than the frames held are good files."""
    assert all(corpus.truths[n].usable for n in VFR_AVIS)
    assert all(corpus.truths[n].declared_frames > corpus.truths[n].decoded_frames for n in VFR_AVIS)
    refused = [f"{stage}: {name}: {by_name[name]}" for stage, by_name in verdicts.stage.items() for name in VFR_AVIS
               if by_name[name] != "usable"]
    assert not refused, "\n".join(refused)


@pytest.mark.slow
def test_index_and_frames_count_the_truths_frames(corpus: Corpus, verdicts: Verdicts) -> None:
    """Where a file is usable, index lists and frames extracts exactly the frames a full decode gives."""
    wrong = []
    for name, truth in sorted(corpus.truths.items()):
        if not truth.usable or name not in verdicts.stage["index"]:
            continue
        for what, counts in (("index", verdicts.index_frames), ("frames", verdicts.jpeg_frames)):
            if counts.get(name) != truth.decoded_frames:
                wrong.append(f"{what}: {name}: {counts.get(name)} frames, the full decode gives {truth.decoded_frames}")
    assert not wrong, "\n".join(wrong)
