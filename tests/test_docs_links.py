"""Every relative markdown link in the docs (README.md, benchmarks/README.md, docs/*.md) points to a
file or folder that exists, and every `#anchor` into a markdown file names one of its headings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(text: str) -> list[str]:
    """The link targets of ``text`` outside code blocks that are not URLs (scheme, ``//``) or mail."""
    text = FENCE.sub("", text)
    found = LINK.findall(text)
    # a link whose text is a code span, [`x`](y), is matched above; bare code spans are not links
    return [t for t in found if not re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)", t)]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = CODE_SPAN.sub(lambda m: m.group(0)[1:-1], heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path.read_text()):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no heading #{fragment} in {dest.name})")
    return broken


def test_the_docs_are_found():
    assert (ROOT / "benchmarks" / "README.md").is_file() and list((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert relative_links(path.read_text()), f"{path.name}: no relative link found (is the pattern right?)"
    assert broken_links(path) == [], f"{path.relative_to(ROOT)}: broken links"


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n")
    (tmp_path / "sub").mkdir()
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](there.md) [ok anchor](there.md#a-heading) [dir](sub/) [web](https://example.org/x.md)\n"
        "[`code text`](missing.md) ![picture](gone.png) [bad anchor](there.md#nope)\n"
        "```\n[in a code block](not_checked.md)\n```\n"
    )
    assert broken_links(doc) == ["missing.md (no such file)", "gone.png (no such file)",
                                 "there.md#nope (no heading #nope in there.md)"]
