"""Per-principal permissions: the file format, pattern coverage, every op through a live server."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from security_support import RawClient, StartServer, hello, sample_request

import minibroker
from minibroker.access.permissions import (
    ADMIN_OF_EVERYTHING,
    NEEDS,
    OPEN,
    Permissions,
    covers,
    load_permissions_file,
    split_words,
)
from minibroker.cli import main
from minibroker.cli.serve import add_commands, config_from_args
from minibroker.errors import Forbidden
from minibroker.protocol import frames
from minibroker.protocol.frame_class import fields

TOKENS = {"t-ci": "ci", "t-dash": "dashboard", "t-ops": "ops", "t-none": "nobody"}
PERMISSIONS = """
# CI produces and consumes jobs, appends events
allow ci         read,write  queue:jobs.# log:events
allow ci         admin       queue:jobs.#
allow dashboard  read        #
allow ops        all         #
allow *          write       topic:metrics.#
"""


def url(port: int | None, token: str) -> str:
    return f"minibroker://{token}@127.0.0.1:{port}"


# ------------------------------------------------------------------ the format


def test_parse_and_grants() -> None:
    perms = Permissions.parse(PERMISSIONS)
    assert perms.principals == ["*", "ci", "dashboard", "ops"]
    ci = perms.grants_for("ci")
    assert ci.allows("write", "queue", "jobs")
    assert ci.allows("read", "queue", "jobs.eu.high")
    assert ci.allows("admin", "queue", "jobs.x")
    assert not ci.allows("write", "queue", "payments")
    assert ci.allows("write", "log", "events")
    assert not ci.allows("admin", "log", "events")
    assert not ci.allows("read", "log", "events.x")
    assert ci.allows("write", "topic", "metrics.cpu")  # from "*"
    assert not ci.allows("read", "topic", "metrics.cpu")
    dash = perms.grants_for("dashboard")
    assert all(dash.allows("read", kind, "any.name") for kind in ("queue", "topic", "log"))
    assert not dash.allows("write", "queue", "jobs")
    stranger = perms.grants_for("stranger")
    assert stranger.allows("write", "topic", "metrics")
    assert not stranger.allows("read", "queue", "jobs")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("permit ci read #", "expected 'allow"),
        ("allow ci read", "at least one resource"),
        ("allow ci fly queue:x", "unknown action 'fly'"),
        ("allow ci read bucket:x", "unknown kind 'bucket'"),
        ("allow ci read queue:jobs*", "whole word"),
        ("allow ci read queue:", "empty pattern"),
    ],
)
def test_parse_errors_name_the_line(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        Permissions.parse(f"# header\n\n{line}\n", source="perms.txt")
    assert str(caught.value).startswith("perms.txt:3:")


def test_a_hash_after_the_start_of_a_line_is_a_pattern_not_a_comment() -> None:
    perms = Permissions.parse("allow ops all #\n")
    assert perms.grants_for("ops").allows("admin", "log", "anything")


@pytest.mark.parametrize(
    ("grant", "wanted", "expected"),
    [
        ("#", "a.b.c", True),
        ("#", "#", True),
        ("a.#", "a", True),
        ("a.#", "a.*", True),
        ("a.#", "a.#", True),
        ("a.#", "a.b.#", True),
        ("a.*", "a.b", True),
        ("a.*", "a.*", True),
        ("a.*", "a.#", False),  # a.# also matches a and a.b.c
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("a.*.c", "a.*.c", True),
        ("a.*.c", "a.#.c", False),
        ("*.created", "#", False),
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
        ("#.c", "a.b.c", True),
        ("#.c", "#.c", True),
        ("#.c", "#", False),
        ("a.*.#", "a.#", False),  # a.# matches a, which a.*.# does not
    ],
)
def test_covers(grant: str, wanted: str, expected: bool) -> None:
    assert covers(split_words(grant), split_words(wanted)) is expected


def _matches(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    """Reference topic matching: * one word, # zero or more."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_matches(rest, topic[i:]) for i in range(len(topic) + 1))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and _matches(rest, topic[1:])


_WORDS = st.sampled_from(["a", "b", "c"])
_PATTERN_WORDS = st.sampled_from(["a", "b", "*", "#"])


@given(
    grant=st.lists(_PATTERN_WORDS, min_size=1, max_size=4),
    wanted=st.lists(_PATTERN_WORDS, min_size=1, max_size=4),
    topic=st.lists(_WORDS, min_size=0, max_size=5),
)
def test_covers_is_sound(grant: list[str], wanted: list[str], topic: list[str]) -> None:
    """If a grant covers a pattern, it matches every topic that pattern matches."""
    if covers(tuple(grant), tuple(wanted)) and _matches(tuple(wanted), tuple(topic)):
        assert _matches(tuple(grant), tuple(topic)), (grant, wanted, topic)


@given(grant=st.lists(_PATTERN_WORDS, min_size=1, max_size=4), topic=st.lists(_WORDS, max_size=5))
def test_covers_agrees_with_matching_on_plain_names(grant: list[str], topic: list[str]) -> None:
    assert covers(tuple(grant), tuple(topic)) == _matches(tuple(grant), tuple(topic))


def test_every_op_is_classified() -> None:
    """A new op must be placed in the permission table, or it is refused to everyone."""
    lists = {"queue.list", "log.list"}
    for op in frames.REQUESTS:
        classes = (op in NEEDS) + (op in OPEN) + (op in lists) + (op in ADMIN_OF_EVERYTHING)
        assert classes == 1, op
    for op, needs in NEEDS.items():
        names = [f.name for f in fields(frames.REQUESTS[op])]
        for _, _, field in needs:
            assert field in names, (op, field)


# ------------------------------------------------------- through a live server


@pytest.fixture
async def guarded(serve: StartServer) -> int:
    server = await serve(tokens=TOKENS, permissions=Permissions.parse(PERMISSIONS))
    assert server.port is not None
    async with minibroker.connect(url(server.port, "t-ops")) as ops:
        await ops.declare_queue("jobs.a")
        await ops.declare_queue("payments")
        await ops.create_log("events")
        await ops.create_log("audit")
    return server.port


async def test_without_grants_every_op_but_the_open_ones_is_forbidden(guarded: int) -> None:
    client = await RawClient.connect(guarded)
    await client.send(hello(token="t-none"))
    assert (await client.response(1))["op"] == "ok"
    for i, op in enumerate(sorted(frames.REQUESTS)):
        if op == "hello":
            continue
        request_id = 100 + i
        await client.send(sample_request(op, request_id))
        answer = await client.response(request_id)
        if op in NEEDS or op in ADMIN_OF_EVERYTHING:
            assert (answer["op"], answer["code"]) == ("error", "forbidden"), (op, answer)
            assert "'nobody' may not" in answer["message"]
        else:
            # Open ops run; the list ops answer, showing nothing.
            assert answer.get("code") != "forbidden", (op, answer)
            if op.endswith(".list"):
                assert answer["result"] == []
    await client.aclose()


async def test_with_every_grant_no_op_is_forbidden(guarded: int) -> None:
    client = await RawClient.connect(guarded)
    await client.send(hello(token="t-ops"))
    assert (await client.response(1))["op"] == "ok"
    for i, op in enumerate(sorted(frames.REQUESTS)):
        if op in ("hello", "request"):  # request would wait for a responder
            continue
        await client.send(sample_request(op, 100 + i))
        answer = await client.response(100 + i)
        assert answer.get("code") != "forbidden", (op, answer)
    await client.aclose()


async def test_grants_through_the_client(guarded: int) -> None:
    async with minibroker.connect(url(guarded, "t-ci")) as ci:
        await ci.put("jobs.a", b"job")
        (delivery,) = await ci.fetch("jobs.a")
        await ci.ack(delivery)
        await ci.declare_queue("jobs.b")
        await ci.append("events", b"e")
        assert [q.queue for q in await ci.list_queues()] == ["jobs.a", "jobs.b"]
        assert await ci.list_logs() == ["events"]
        with pytest.raises(Forbidden) as caught:
            await ci.put("payments", b"steal")
        assert caught.value.details == {"action": "write", "kind": "queue", "name": "payments"}
        with pytest.raises(Forbidden):
            await ci.read("audit")
        with pytest.raises(Forbidden):
            await ci.delete_log("events")
        with pytest.raises(Forbidden):
            await ci.declare_queue("jobs.c", dead_letter_queue="payments")
        # The connection stays usable after a forbidden request.
        assert await ci.ping(b"still here") == b"still here"
        await ci.publish("metrics.cpu", b"1")  # granted to everyone

    async with minibroker.connect(url(guarded, "t-dash")) as dash:
        assert len(await dash.list_queues()) == 3
        assert (await dash.queue_stats("payments")).ready == 0
        with pytest.raises(Forbidden):
            await dash.put("payments", b"x")
        with pytest.raises(Forbidden):
            await dash.purge_queue("payments")


async def test_subscription_patterns_must_be_covered(serve: StartServer) -> None:
    perms = Permissions.parse("allow viewer read topic:orders.# topic:metrics.*\n")
    server = await serve(tokens={"t-view": "viewer"}, permissions=perms)
    async with minibroker.connect(url(server.port, "t-view")) as mb:
        for allowed in ("orders.#", "orders.*", "orders.eu.created", "metrics.*", "metrics.cpu"):
            async with mb.subscribe(allowed):
                pass
        for refused in ("#", "*.created", "metrics.#", "metrics"):
            with pytest.raises(Forbidden):
                async with mb.subscribe(refused):
                    pass  # pragma: no cover


async def test_permissions_without_tokens_apply_to_anonymous(serve: StartServer) -> None:
    perms = Permissions.parse("allow anonymous read,write queue:open.#\n")
    server = await serve(permissions=perms)
    async with minibroker.connect(f"minibroker://127.0.0.1:{server.port}") as mb:
        with pytest.raises(Forbidden):
            await mb.declare_queue("open.jobs")
        with pytest.raises(Forbidden):
            await mb.put("closed", b"x")


def test_serve_loads_the_permissions_file(tmp_path: Path) -> None:
    path = tmp_path / "perms"
    path.write_text(PERMISSIONS)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    config = config_from_args(
        parser.parse_args(["serve", "--auth-token", "x", "--permissions", str(path)])
    )
    assert config.permissions is not None
    assert config.permissions.principals == ["*", "ci", "dashboard", "ops"]
    assert load_permissions_file(str(path)).principals == config.permissions.principals


def test_serve_refuses_a_bad_permissions_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "perms"
    path.write_text("allow ci fly queue:x\n")
    assert main(["serve", "--port", "0", "--permissions", str(path)]) == 2
    assert "perms:1: unknown action 'fly'" in capsys.readouterr().err
