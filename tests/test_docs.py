"""The documents keep their promises: every relative link resolves, every "§" a code comment
cites exists in the notes it cites, and no code points at a document outside the repository."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted(p for where in ("docs", "deploy", "tests") for p in (ROOT / where).rglob("*.md")),
]
CODE = sorted(p for d in ("bot", "handlers", "tests") for p in (ROOT / d).rglob("*.py"))
BITRIX24_NOTES = ROOT / "docs" / "bitrix24-notes.md"
ECOSYSTEM_NOTES = ROOT / "docs" / "ecosystem-notes.md"

# The research notes this project started from live beside the repository, not in it.
_OUTSIDE = re.compile(r"\.\./shared/")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
# "§1.5", "§00 item 9", "§00 items 4, 6, 7, 9", "§3-§4"
_CITATION = re.compile(r"§(\d+(?:\.\d+)*)(?: items? (\d+(?:(?:, | and |, and )\d+)*))?")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = _FENCE.sub("", document.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def relative_links(document: Path) -> list[str]:
    text = _FENCE.sub("", document.read_text())
    return [
        target
        for target in _LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # https:, mailto:
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    for target in relative_links(document):
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        assert resolved.exists(), f"{target} in {document.relative_to(ROOT)}"
        assert resolved.is_relative_to(ROOT.resolve()), f"{target} leaves the repository"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{target} in {document.relative_to(ROOT)}"


@cache
def sections(notes: Path) -> dict[str, set[str]]:
    """Each numbered section of a notes file, with the numbers of its list items."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in _FENCE.sub("", notes.read_text()).splitlines():
        heading = re.match(r"^#{2,4} (\d+(?:\.\d+)*)[. ]", line)
        if heading:
            current = heading.group(1)
            found[current] = set()
        elif current and (item := re.match(r"^(\d+)\. ", line)):
            found[current].add(item.group(1))
    return found


def citations(path: Path) -> list[tuple[Path, str, list[str], int]]:
    """(notes, section, items, line) for every "§" in a source file."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        notes = ECOSYSTEM_NOTES if "ecosystem notes" in line else BITRIX24_NOTES
        for match in _CITATION.finditer(line):
            items = re.findall(r"\d+", match.group(2) or "")
            found.append((notes, match.group(1), items, number))
    return found


def test_the_code_cites_some_sections() -> None:
    # The test below must have something to check: it passes vacuously without citations.
    assert sum(len(citations(path)) for path in CODE) > 100


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_section_a_comment_cites_exists(path: Path) -> None:
    for notes, section, items, line in citations(path):
        where = f"{path.relative_to(ROOT)}:{line} cites §{section}"
        assert section in sections(notes), f"{where}, which {notes.name} lacks"
        for item in items:
            assert item in sections(notes)[section], f"{where} item {item}: not in {notes.name}"


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_code_points_at_documents_outside_the_repository(path: Path) -> None:
    assert not _OUTSIDE.search(path.read_text()), path.relative_to(ROOT)


def test_the_notes_number_their_sections_as_cited() -> None:
    notes = sections(BITRIX24_NOTES)
    assert notes["00"] == {str(i) for i in range(1, 12)}
    assert notes["0"] == {str(i) for i in range(1, 15)}
    assert {"1.1", "1.5", "1.11", "3.4", "4.3", "6.8", "6.10", "7.3", "8", "9"} <= set(notes)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Settings", "settings"),
        ("Webhook mode (push)", "webhook-mode-push"),
        ("5. Webhook mode", "5-webhook-mode"),
        ("`python -m bot check`", "python--m-bot-check"),
    ],
)
def test_anchors_are_made_as_github_makes_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
