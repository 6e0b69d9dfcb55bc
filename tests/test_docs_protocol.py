"""docs/protocol.md stays true to the code.

Every request op, server frame and error code must be documented; every
field of every request must appear in its operation's section; and every
annotated hex example must decode, with the real decoder, to exactly the
value printed under it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from minibroker.errors import ERRORS_BY_CODE
from minibroker.protocol import frames
from minibroker.protocol.codec import FrameDecoder, InvalidFrame, RawFrameDecoder
from minibroker.protocol.frame_class import fields

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
TEXT = DOC.read_text(encoding="utf-8")

#: A fenced ```hex block, then (after some prose) the ```python block showing its value.
EXAMPLE = re.compile(r"```hex\n(?P<hex>.*?)```(?:(?!```).)*?```python\n(?P<value>.*?)```", re.S)


def examples() -> list[tuple[bytes, object]]:
    found = []
    for match in EXAMPLE.finditer(TEXT):
        hex_digits = "".join(line.split("#", 1)[0] for line in match["hex"].splitlines())
        found.append((bytes.fromhex(hex_digits), ast.literal_eval(match["value"])))
    return found


def section(heading: str) -> str:
    """The text from a ``#### `op` `` heading to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#)", TEXT, re.S | re.M)
    assert match, f"no section headed {heading!r} in {DOC.name}"
    return match[1]


@pytest.mark.parametrize("op", sorted(frames.REQUESTS))
def test_every_request_op_is_documented(op: str) -> None:
    assert f"`{op}`" in TEXT


@pytest.mark.parametrize("op", sorted(frames.SERVER_FRAMES))
def test_every_server_frame_is_documented(op: str) -> None:
    assert f"`{op}`" in TEXT


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_every_error_code_is_documented(code: str) -> None:
    assert re.search(rf"^\| `{re.escape(code)}` \|", TEXT, re.M), f"{code} not in the table"


@pytest.mark.parametrize("cls", frames.REQUEST_TYPES, ids=lambda c: c.op)
def test_every_request_field_is_in_its_section(cls: type[frames.Request]) -> None:
    body = section("The handshake") if cls is frames.Hello else section(f"`{cls.op}`")
    for field in fields(cls):
        if field.name != "id":
            assert f"`{field.name}`" in body, f"{cls.op}: field {field.name!r} undocumented"


@pytest.mark.parametrize("cls", frames.SERVER_FRAME_TYPES, ids=lambda c: c.op)
def test_every_server_frame_field_is_documented(cls: type) -> None:
    if cls in (frames.Ok, frames.Error):
        documented = section("Requests and responses")  # one field table each
    else:
        rows = [line for line in TEXT.splitlines() if line.startswith(f"| `{cls.op}` |")]
        assert rows, f"no table row for the {cls.op} frame"
        documented = " ".join(rows)
    for field in fields(cls):
        assert f"`{field.name}`" in documented, f"{cls.op}: field {field.name!r} undocumented"


def test_the_examples_are_there() -> None:
    ops = {value["op"] for _, value in examples()}  # type: ignore[index]
    assert {"hello", "ok", "ping", "error", "msg", "bye"} <= ops
    assert TEXT.count("```hex") == len(examples())


@pytest.mark.parametrize("index", range(len(examples())))
def test_hex_example_decodes_to_what_the_doc_says(index: int) -> None:
    data, documented = examples()[index]
    decoder = RawFrameDecoder()
    decoder.receive_data(data)
    values = list(decoder.values())
    assert decoder.buffered_bytes == 0, "trailing bytes after the frame"
    assert values == [documented]
    assert isinstance(documented, dict)
    op = documented["op"]
    if op in frames.SERVER_FRAMES:
        # A server frame: the typed decoder accepts it too.
        frames.DECODERS[op](documented, "")
    else:
        # A request: the server's decoder turns it into its dataclass (or, for
        # the deliberately bad example, into an InvalidFrame naming the field).
        requests = FrameDecoder()
        requests.receive_data(data)
        (request,) = requests.frames()
        if isinstance(request, InvalidFrame):
            assert "'data'" in request.error.message
        else:
            assert type(request) is frames.REQUESTS[op]


def test_default_port_and_version_match_the_code() -> None:
    from minibroker.defaults import DEFAULT_PORT

    assert f"default port **{DEFAULT_PORT}**" in TEXT
    assert f"Protocol version: **{frames.PROTOCOL_VERSION}**" in TEXT
