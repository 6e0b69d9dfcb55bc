"""Every x-ray step's ``path::symbol`` is in docs/internals.md, where
test_doc_links checks that it names a function that exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from doccheck import check_code_ref, code_refs

from minibroker.core.xray import SOURCES

INTERNALS = Path(__file__).resolve().parents[2] / "docs" / "internals.md"


@pytest.mark.parametrize("step", sorted(SOURCES))
def test_each_step_source_is_documented_and_exists(step: str) -> None:
    refs = {p.target: p for p in code_refs(INTERNALS)}
    pointer = refs.get(SOURCES[step])
    assert pointer is not None, f"docs/internals.md does not mention `{SOURCES[step]}`"
    assert check_code_ref(pointer) is None
