"""asyncio entry point: ``async with minibroker.aio.connect(url) as mb``.

The client lives in ``minibroker.client.aio``; this module only gives it the
short public name. Same methods, arguments and errors as the Trio client.
"""

from minibroker.client.aio import DEFAULT_MAX_PENDING, Client, Subscription, connect

__all__ = ["DEFAULT_MAX_PENDING", "Client", "Subscription", "connect"]
