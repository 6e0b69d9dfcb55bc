"""Find what the Markdown docs point at, and whether it is there.

Three kinds of pointers are checked by tests/docs/test_doc_links.py:

* relative links, ``[text](path)`` and ``[text](path#anchor)``: the file must
  exist, and the anchor must be a heading of that file (GitHub's slugs);
* code references, ```minibroker/core/trie.py::SubscriptionTrie.match```:
  the file must parse and define the symbol (a module-level class, function
  or variable, then attributes: methods, nested classes, class attributes
  and ``self.x`` assignments in the class's methods);
* snippets, ``<!-- snippet: docs/examples/testing/test_x.py#name -->`` right
  before a fenced code block: the block must be exactly the text between
  ``# --- snippet: name`` and ``# --- end`` in that file.

Everything is plain text and ``ast``: nothing is imported.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"(?<!\!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_CODE_REF = re.compile(r"`(?P<path>[\w./-]+\.py)::(?P<symbol>[A-Za-z_][\w.]*)`")
_SNIPPET = re.compile(r"<!--\s*snippet:\s*(?P<path>[\w./-]+)#(?P<name>[\w .-]+?)\s*-->")
_HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"(?P<id>[^\"]+)\"")


@dataclass(frozen=True)
class Pointer:
    """One thing a document points at, and where the pointer is."""

    doc: Path
    line: int
    target: str

    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    """Every Markdown page the checks cover: docs/ (recursively) and the README."""
    return sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, numbered from 1, inline code kept."""
    out: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def _without_inline_code(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def links(doc: Path) -> list[Pointer]:
    """Relative link targets (no scheme, no mailto) in prose."""
    found = []
    for number, line in _prose_lines(doc.read_text()):
        prose = _without_inline_code(line)
        for match in [*_LINK.finditer(prose), *_IMAGE.finditer(prose)]:
            target = match.group("target")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            found.append(Pointer(doc, number, target))
    return found


def code_refs(doc: Path) -> list[Pointer]:
    """``path.py::Symbol.attr`` references, in prose and in code blocks alike."""
    found = []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        for match in _CODE_REF.finditer(line):
            found.append(Pointer(doc, number, f"{match['path']}::{match['symbol']}"))
    return found


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").lower()
    kept = []
    for ch in text:
        if ch in (" ", "-", "_") or unicodedata.category(ch)[0] in ("L", "N"):
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


@cache
def anchors(doc: Path) -> frozenset[str]:
    """Every anchor a page offers: heading slugs (with GitHub's -1, -2 for repeats)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose_lines(doc.read_text()):
        for match in _EXPLICIT_ANCHOR.finditer(line):
            out.add(match["id"])
        heading = _HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading["title"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def check_link(pointer: Pointer) -> str | None:
    """None if the link resolves, else what is wrong."""
    path_part, _, anchor = pointer.target.partition("#")
    target = pointer.doc if not path_part else (pointer.doc.parent / path_part).resolve()
    if not target.exists():
        return f"{pointer.where()}: {pointer.target!r}: no such file"
    if ROOT not in target.parents and target != ROOT:
        return f"{pointer.where()}: {pointer.target!r} leaves the repository"
    if anchor:
        if target.suffix != ".md":
            return f"{pointer.where()}: {pointer.target!r}: anchors only checked in Markdown"
        if anchor not in anchors(target):
            return f"{pointer.where()}: {pointer.target!r}: no heading with anchor #{anchor}"
    return None


# ------------------------------------------------------------------ symbols


@cache
def _module(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _names_in(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names a module or class body defines: defs, classes, (annotated) assignments."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.If | ast.Try):  # TYPE_CHECKING blocks, fallbacks
            inner = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            names.update(_names_in(inner))
    return names


def _attributes(cls: ast.ClassDef) -> dict[str, ast.AST]:
    """A class's members plus the ``self.x`` its methods assign, and ``__slots__`` names."""
    names = _names_in(cls.body)
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            names.setdefault(node.attr, node)
    return names


def check_code_ref(pointer: Pointer) -> str | None:
    """None if ``path::Symbol[.attr...]`` names something defined there."""
    path_text, _, symbol = pointer.target.partition("::")
    path = ROOT / path_text
    if not path.is_file():
        return f"{pointer.where()}: {pointer.target}: no file {path_text}"
    try:
        names = _names_in(_module(path).body)
    except SyntaxError as exc:
        return f"{pointer.where()}: {pointer.target}: {path_text} does not parse: {exc}"
    node: ast.AST | None = None
    for depth, part in enumerate(symbol.split(".")):
        node = names.get(part)
        if node is None:
            where = path_text if depth == 0 else symbol.rsplit(".", 1)[0]
            return f"{pointer.where()}: {pointer.target}: {where} defines no {part!r}"
        names = _attributes(node) if isinstance(node, ast.ClassDef) else {}
    return None


# ----------------------------------------------------------------- snippets


@dataclass(frozen=True)
class Snippet:
    pointer: Pointer
    name: str
    block: str  # the fenced block's text, without the fences


def snippets(doc: Path) -> list[Snippet]:
    """``<!-- snippet: file#name -->`` markers and the fenced block right after each."""
    lines = doc.read_text().splitlines()
    found = []
    for index, line in enumerate(lines):
        match = _SNIPPET.search(line)
        if match is None:
            continue
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        block: list[str] = []
        if start < len(lines) and _FENCE.match(lines[start].strip()):
            for inner in lines[start + 1 :]:
                if _FENCE.match(inner.strip()):
                    break
                block.append(inner)
        found.append(
            Snippet(Pointer(doc, index + 1, match["path"]), match["name"], "\n".join(block))
        )
    return found


def snippet_source(path: Path, name: str) -> str | None:
    """The text between ``# --- snippet: name`` and the next ``# --- end`` in ``path``."""
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() == f"# --- snippet: {name}":
            body: list[str] = []
            for inner in lines[index + 1 :]:
                if inner.strip() == "# --- end":
                    return "\n".join(body).strip("\n")
                body.append(inner)
    return None


def check_snippet(snippet: Snippet) -> str | None:
    path = ROOT / snippet.pointer.target
    where = snippet.pointer.where()
    if not path.is_file():
        return f"{where}: snippet file {snippet.pointer.target} does not exist"
    source = snippet_source(path, snippet.name)
    if source is None:
        return f"{where}: {snippet.pointer.target} has no snippet {snippet.name!r}"
    if not snippet.block:
        return f"{where}: no fenced code block follows the snippet marker"
    if snippet.block.strip("\n") != source:
        return f"{where}: the block differs from {snippet.pointer.target}#{snippet.name}"
    return None
