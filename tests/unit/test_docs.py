"""Every relative link in README.md and docs/*.md leads somewhere: to a file
or folder of this repository, and a #fragment to a heading of the Markdown
file it names, spelled as GitHub spells heading anchors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
LINE_ANCHOR = re.compile(r"^L\d+(-L\d+)?$")  # GitHub's line anchors on a source file


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = None
    for number, line in enumerate(text.splitlines(), 1):
        if match := FENCE.match(line):
            if fenced is None:
                fenced = match[1]
            elif match[1] == fenced:
                fenced = None
            continue
        if fenced is None:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, every
    character but letters, digits, `_`, `-` and spaces dropped, each space a
    `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = CODE_SPAN.sub(lambda m: m[2], text).replace("**", "").replace("*", "")
    kept = "".join(c for c in text.lower() if c.isalnum() or c in "_- ")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    text = path.read_text()
    for _, line in prose_lines(text):
        if match := HEADING.match(line):
            base = slug(match[2])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")  # GitHub numbers repeats
    return found | set(HTML_ANCHOR.findall(text))


def links(text: str):
    """(line number, target) of every link in the prose, code spans left out."""
    for number, line in prose_lines(text):
        if match := REFERENCE.match(line):
            yield number, match[1]
            continue
        for target in INLINE_LINK.findall(CODE_SPAN.sub("", line)):
            yield number, target


def broken_links(doc: Path, root: Path) -> list[str]:
    """Each relative link of `doc` that leads nowhere, as `file:line: target: why`."""
    broken = []
    for number, target in links(doc.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("//"):
            continue  # http:, https:, mailto: ... are not this repository's to check
        where, _, fragment = target.partition("#")
        path = (doc.parent / where).resolve() if where else doc
        problem = None
        if not path.is_relative_to(root.resolve()):
            problem = "outside the repository"
        elif not path.exists():
            problem = "no such file or folder"
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            problem = f"no heading with the anchor #{fragment} in {path.relative_to(root.resolve())}"
        elif fragment and path.suffix != ".md" and not LINE_ANCHOR.match(fragment):
            problem = f"#{fragment} is not a line anchor, and {path.name} has no headings"
        if problem:
            broken.append(f"{doc.relative_to(root)}:{number}: {target}: {problem}")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_every_relative_link_resolves(doc):
    assert broken_links(doc, ROOT) == []


def test_the_docs_this_checks_are_the_ones_readers_have():
    names = {str(doc.relative_to(ROOT)) for doc in DOCS}
    assert {"README.md", "docs/cli.md", "docs/benchmarks.md", "docs/development.md"} <= names


@pytest.mark.parametrize(("heading", "anchor"), [
    pytest.param("The promises", "the-promises", id="words"),
    pytest.param("`scaler pause` and `scaler resume`", "scaler-pause-and-scaler-resume", id="code-spans"),
    pytest.param("Signals: `idle` and `wake`", "signals-idle-and-wake", id="punctuation"),
    pytest.param("Waking for a while: `resume --for` and `--until`", "waking-for-a-while-resume---for-and---until",
                 id="hyphens-kept"),
    pytest.param("A real node, and the image", "a-real-node-and-the-image", id="comma"),
    pytest.param("Edge → last write (p50)", "edge--last-write-p50", id="symbols-dropped"),
    pytest.param("`min_replicas` and **bounds**", "min_replicas-and-bounds", id="underscore-and-emphasis"),
    pytest.param("See [policies](docs/policies.md)", "see-policies", id="link-text"),
])
def test_anchors_are_spelled_as_github_spells_them(heading, anchor):
    assert slug(heading) == anchor


def test_a_broken_link_is_reported_and_a_good_one_is_not(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "other.md").write_text("# Other\n\n## Exit codes\n\n## Exit codes\n\n```\n# Not a heading\n```\n")
    (repo / "src").mkdir()
    (repo / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    doc = repo / "README.md"
    doc.write_text("\n".join([
        "# Title",
        "## Local part",
        "[fine](docs/other.md) [fine](docs/other.md#exit-codes) [fine](docs/other.md#exit-codes-1)",
        "[fine](#local-part) [fine](src/code.py#L1) [folder](docs) [web](https://example.com/x.md#nowhere)",
        "[gone](docs/missing.md)",
        "[no anchor](docs/other.md#exit-codes-2)",
        "[not a heading](docs/other.md#not-a-heading)",
        "[bad local](#title-2)",
        "[escapes](../outside.md)",
        "`[in a code span](nowhere.md)`",
        "```",
        "[in a fence](nowhere.md)",
        "```",
        "[ref]: docs/absent.md",
    ]) + "\n")
    assert broken_links(doc, repo) == [
        "README.md:5: docs/missing.md: no such file or folder",
        "README.md:6: docs/other.md#exit-codes-2: no heading with the anchor #exit-codes-2 in docs/other.md",
        "README.md:7: docs/other.md#not-a-heading: no heading with the anchor #not-a-heading in docs/other.md",
        "README.md:8: #title-2: no heading with the anchor #title-2 in README.md",
        "README.md:9: ../outside.md: outside the repository",
        "README.md:14: docs/absent.md: no such file or folder",
    ]
