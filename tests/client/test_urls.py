"""Broker URLs: what the Python clients accept, refuse, and never show."""

from __future__ import annotations

import pytest
from client_facades import NETWORK_KINDS, Opener

from minibroker.client.url import parse_url, redact_url
from minibroker.testing import ThreadedBroker


def test_a_url_carries_token_host_port_and_namespace() -> None:
    address = parse_url("minibroker://s%40cret@example.com:7000?namespace=a.b")
    assert (address.host, address.port, address.token, address.namespace) == (
        "example.com",
        7000,
        "s@cret",
        "a.b",
    )


def test_a_misspelt_option_is_refused_naming_the_known_ones() -> None:
    known = r"unknown URL option 'namespce'.*known options are: namespace"
    with pytest.raises(ValueError, match=known):
        parse_url("minibroker://127.0.0.1:7878?namespce=orders")


def test_several_unknown_options_are_all_named() -> None:
    with pytest.raises(ValueError, match=r"unknown URL options 'a', 'b'"):
        parse_url("minibroker://h?b=1&a=2&namespace=x")


@pytest.mark.parametrize(
    "url",
    ["minibroker://sk_live_secret@h:1?nope=1", "http://sk_live_secret@h:1"],
)
def test_url_errors_never_show_the_token(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_url(url)
    assert "sk_live_secret" not in str(refused.value)
    assert "***@h:1" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("minibroker://sk_live@127.0.0.1:1", "minibroker://***@127.0.0.1:1"),
        ("minibrokers://a%2Fb@h?namespace=n", "minibrokers://***@h?namespace=n"),
        ("sk@h:1", "***@h:1"),
        ("minibroker://h:1?namespace=a@b", "minibroker://h:1?namespace=a@b"),
        ("minibroker://h:1", "minibroker://h:1"),
    ],
)
def test_redact_url_hides_only_the_token(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("client_kind", NETWORK_KINDS)
async def test_every_client_refuses_a_misspelt_option_before_connecting(
    open_client: Opener, minibroker_server: ThreadedBroker
) -> None:
    with pytest.raises(ValueError, match="namespce"):
        async with open_client(url=minibroker_server.url + "?namespce=isolated"):
            pass  # pragma: no cover - the connection must not open
