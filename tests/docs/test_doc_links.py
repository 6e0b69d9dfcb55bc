"""The docs point at things that exist: links, anchors, code references, snippets.

See tests/docs/doccheck.py for what each check accepts. A failure names the
page and line of every stale pointer at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from doccheck import (
    ROOT,
    Pointer,
    anchors,
    check_code_ref,
    check_link,
    check_repo_path,
    check_snippet,
    code_refs,
    links,
    markdown_files,
    repo_paths,
    slug,
    snippets,
)

PAGES = markdown_files()


def _ids(pages: list[Path]) -> list[str]:
    return [str(page.relative_to(ROOT)) for page in pages]


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_relative_links_resolve(page: Path) -> None:
    problems = [p for p in map(check_link, links(page)) if p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_code_references_resolve(page: Path) -> None:
    problems = [p for p in map(check_code_ref, code_refs(page)) if p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_repository_paths_exist(page: Path) -> None:
    problems = [p for p in map(check_repo_path, repo_paths(page)) if p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_snippets_match_their_files(page: Path) -> None:
    problems = [p for p in map(check_snippet, snippets(page)) if p]
    assert not problems, "\n".join(problems)


def test_the_internals_tour_links_to_code() -> None:
    """The tour is meant to be read with the code open: it must keep pointing at it."""
    refs = code_refs(ROOT / "docs" / "internals.md")
    assert len(refs) >= 30
    assert not [p for p in map(check_code_ref, refs) if p]


def test_testing_guide_is_made_of_tested_snippets() -> None:
    """Every Python block in docs/testing.md is a snippet of a file the suite runs."""
    page = ROOT / "docs" / "testing.md"
    marked = {s.block.strip("\n") for s in snippets(page)}
    text = page.read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    unmarked = [b for b in blocks if b.strip("\n") not in marked]
    assert not unmarked, "unmarked python blocks:\n\n" + "\n---\n".join(unmarked)
    for snippet in snippets(page):
        assert snippet.pointer.target.startswith("docs/examples/testing/")


# ------------------------------------------------------- the checker itself


def test_slugs_follow_github(tmp_path: Path) -> None:
    assert slug("How it works inside") == "how-it-works-inside"
    assert slug("The `consume` helper: fast, batched") == "the-consume-helper-fast-batched"
    assert slug("Limits & protection (defaults)") == "limits--protection-defaults"
    assert slug("fsync=always, batch or never") == "fsyncalways-batch-or-never"
    page = tmp_path / "page.md"
    page.write_text("# A\n## Setup\n```\n# not a heading\n```\n## Setup\n")
    assert anchors(page) == {"a", "setup", "setup-1"}


def test_the_checker_finds_stale_pointers(tmp_path: Path) -> None:
    page = ROOT / "docs" / "README.md"
    good = Pointer(page, 1, "minibroker/core/trie.py::SubscriptionTrie.match")
    assert check_code_ref(good) is None
    assert check_code_ref(Pointer(page, 1, "minibroker/core/trie.py::SubscriptionTrie.nope"))
    assert check_code_ref(Pointer(page, 1, "minibroker/core/nope.py::X"))
    attr = Pointer(page, 1, "minibroker/protocol/session.py::Session._held_ids")
    assert check_code_ref(attr) is None  # assigned as self._held_ids in __init__
    assert check_link(Pointer(page, 1, "semantics.md#queues")) is None
    assert check_link(Pointer(page, 1, "semantics.md#no-such-heading"))
    assert check_link(Pointer(page, 1, "missing.md"))
    assert check_repo_path(Pointer(page, 1, "tests/docs/doccheck.py")) is None
    assert check_repo_path(Pointer(page, 1, "tests/docs/")) is None
    assert check_repo_path(Pointer(page, 1, "tests/docs/nope.py"))
