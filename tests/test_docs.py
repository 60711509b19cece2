"""The README stays short and every relative link in the docs leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _links(page: Path) -> list[str]:
    """Relative link targets of a Markdown page, code blocks left out."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_readme_is_at_most_200_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_the_index_links_every_docs_page():
    linked = {Path(t.partition("#")[0]).name for t in _links(ROOT / "docs" / "index.md")}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages <= linked, f"docs/index.md does not link {sorted(pages - linked)}"


def test_docs_carry_no_internal_issue_numbers():
    for page in PAGES:
        found = re.findall(r"\bissue \d+", page.read_text(encoding="utf-8"), re.I)
        assert not found, f"{page.relative_to(ROOT)} mentions {found}: say what changed, not the ticket"


def _envvar_rows() -> list[str]:
    """The command reference's row for every option: command, its longest name, the variable it reads."""
    import click

    from cli import cli

    rows = []
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option):
                envvar = param.envvar if isinstance(param.envvar, str) else (param.envvar or [None])[0]
                variable = envvar or f"VIDEOPREP_{name.upper()}_{param.name.upper()}"
                rows.append(f"| {name} | `{max(param.opts, key=len)}` | `{variable}` |")
    return rows


def test_every_option_s_environment_variable_is_documented():
    text = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    missing = [row for row in _envvar_rows() if row not in text]
    assert not missing, ("docs/commands.md lacks these rows of its 'Every variable' table (replace the table with "
                         "these rows and the ones present):\n" + "\n".join(missing))
