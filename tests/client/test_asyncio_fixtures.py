"""asyncio test suites (issue 18 item 1): ``minibroker_aio_client`` works
under pytest-asyncio, and a Trio fixture in a test Trio does not run says
which fixture to use instead of failing inside pytest-trio. Each runs a
small suite in a pytest subprocess, as a user's project would."""

from __future__ import annotations

import pytest


def run_suite(pytester: pytest.Pytester, source: str, *ini: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\n" + "\n".join(ini) + "\n")
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_an_asyncio_suite_gets_an_asyncio_client(pytester: pytest.Pytester) -> None:
    result = run_suite(
        pytester,
        """
        import pytest

        @pytest.mark.asyncio
        async def test_round_trip(minibroker_aio_client):
            mb = minibroker_aio_client
            await mb.declare_queue("jobs")
            await mb.put("jobs", b"job")
            [delivery] = await mb.fetch("jobs")
            await delivery.ack()
            assert delivery.body == b"job"

        @pytest.mark.asyncio
        async def test_namespaces_are_per_test(minibroker_aio_client):
            assert await minibroker_aio_client.list_queues() == []

        @pytest.mark.asyncio
        async def test_serving_is_ready_on_entry(minibroker_aio_client):
            async def echo(req):
                return req.body
            async with minibroker_aio_client.serving("svc.echo", echo):
                reply = await minibroker_aio_client.request("svc.echo", b"hi")
            assert reply.body == b"hi"
        """,
        "asyncio_default_fixture_loop_scope = function",
    )
    result.assert_outcomes(passed=3)


TRIO_FIXTURE_IN_AN_ASYNCIO_TEST = """
import pytest

@pytest.mark.asyncio
async def test_wrong_fixture(minibroker_client):
    await minibroker_client.ping()
"""


def test_a_trio_fixture_in_an_asyncio_test_names_the_asyncio_one(
    pytester: pytest.Pytester,
) -> None:
    result = run_suite(
        pytester, TRIO_FIXTURE_IN_AN_ASYNCIO_TEST, "asyncio_default_fixture_loop_scope = function"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*minibroker_client is a Trio fixture but test_wrong_fixture does not run under Trio*"]
    )
    result.stdout.no_fnmatch_line("*RunContext*")


def test_forgetting_trio_mode_says_how_to_turn_it_on(pytester: pytest.Pytester) -> None:
    result = run_suite(
        pytester,
        """
        async def test_forgot(minibroker_client):
            await minibroker_client.ping()
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*set trio_mode = true (or mark it @pytest.mark.trio)*"])



def test_the_asyncio_fixture_in_a_test_trio_runs_names_the_trio_one(
    pytester: pytest.Pytester,
) -> None:
    """trio_mode claims every ``async def`` test, ``@pytest.mark.asyncio`` ones
    too: pytest-asyncio still set the fixture up on its own loop, and the test's
    first call failed deep in the client with "no running event loop"."""
    result = run_suite(
        pytester,
        """
        import pytest

        @pytest.mark.asyncio
        async def test_claimed_by_trio(minibroker_aio_client):
            await minibroker_aio_client.ping()
        """,
        "trio_mode = true",
        "asyncio_default_fixture_loop_scope = function",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*minibroker_aio_client is an asyncio fixture but test_claimed_by_trio runs under Trio*"]
    )
    result.stdout.no_fnmatch_line("*no running event loop*")


def test_a_trio_fixture_under_asyncio_auto_mode_says_to_use_strict_mode(
    pytester: pytest.Pytester,
) -> None:
    """pytest-asyncio's ``asyncio_mode = auto`` sets every ``async def`` fixture
    up on asyncio, a ``@pytest.mark.trio`` test's too: ``minibroker_client``
    failed with "minibroker.open_broker runs on trio but this code runs under
    asyncio: use run_in_thread()", advice for application code, not for a
    suite's configuration. The asyncio tests of the same suite still pass."""
    result = run_suite(
        pytester,
        """
        import pytest

        @pytest.mark.trio
        async def test_trio_side(minibroker_client):
            await minibroker_client.ping()

        async def test_asyncio_side(minibroker_aio_client):
            await minibroker_aio_client.ping()
        """,
        "asyncio_mode = auto",
        "asyncio_default_fixture_loop_scope = function",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*minibroker_client is a Trio fixture*asyncio_mode = auto*asyncio_mode = strict*"]
    )
    result.stdout.no_fnmatch_line("*use minibroker.testing.run_in_thread*")


def test_anyio_tests_on_the_trio_backend_get_the_trio_fixtures(
    pytester: pytest.Pytester,
) -> None:
    """anyio's pytest plugin runs an ``@pytest.mark.anyio`` test, and its async
    fixtures, on the ``anyio_backend`` it asks for: on Trio the Trio fixtures
    work, and they were refused ("does not run under Trio"). On asyncio they
    fail with a sentence naming the asyncio fixture."""
    result = run_suite(
        pytester,
        """
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.fixture(params=["trio", "asyncio"])
        def anyio_backend(request):
            return request.param

        async def test_trio_fixture(minibroker_client, anyio_backend):
            await minibroker_client.declare_queue("jobs")
            await minibroker_client.put("jobs", b"job")
            [delivery] = await minibroker_client.fetch("jobs")
            assert delivery.body == b"job"
        """,
        "asyncio_default_fixture_loop_scope = function",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "minibroker_client is a Trio fixture but test_trio_fixture?asyncio? runs "
            "under asyncio: asyncio tests use minibroker_aio_client*"
        ]
    )
