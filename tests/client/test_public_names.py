"""What a user's code names comes from ``minibroker`` itself (issue 18 item 8)."""

from __future__ import annotations

import pytest

import minibroker


@pytest.mark.parametrize(
    "name",
    [
        "Limits",
        "ServerConfig",
        "ServeHandle",
        "IncomingRequest",
        "SyncIncomingRequest",
        "Reply",
        "Delivery",
        "SyncDelivery",
        "TopicMessage",
        "PublishResult",
        "Record",
        "QueueStats",
        "LogStats",
        "SubscriptionEnded",
        "EmbeddedBroker",
        "TooLarge",
        "UnknownDelivery",
    ],
)
def test_names_users_need_are_importable_from_the_package(name: str) -> None:
    assert getattr(minibroker, name).__name__ == name


def test_every_name_in_all_resolves() -> None:
    for name in minibroker.__all__:
        assert getattr(minibroker, name) is not None, name


async def test_an_embedded_broker_that_listens_has_a_url() -> None:
    async with minibroker.open_broker(listen=True) as broker:
        assert broker.url == f"minibroker://127.0.0.1:{broker.port}"
        async with minibroker.connect(broker.url) as mb:
            assert await mb.ping(b"by url") == b"by url"


async def test_an_embedded_broker_without_a_socket_says_how_to_get_a_url() -> None:
    async with minibroker.open_broker() as broker:
        with pytest.raises(RuntimeError, match=r"open_broker\(listen=True\)"):
            _ = broker.url
