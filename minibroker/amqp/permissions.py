"""The native permissions file, applied to AMQP methods.

A login's password is a token; the token's principal gets its grants from
the permissions file (``minibroker/access/permissions.py``), exactly as on
the native port. AMQP has no kinds of its own there; its objects map onto
the native ones:

* a queue is a ``queue`` (it *is* a minibroker queue);
* a message published to a topic exchange goes to the core topic it maps to
  (``amq.topic``: the routing key; exchange ``E``: ``E.<key>``), so it needs
  what a native publish to that topic needs, and binding a queue to a topic
  exchange needs what a native ``bind`` to that pattern needs;
* any other exchange ``E`` (direct, fanout, headers) is the ``topic`` named
  ``E``;
* the default exchange delivers to the queue named by the routing key: a
  publish there is a ``put`` (write on that queue).

==================================  ==========================================
method                              needs
==================================  ==========================================
queue.declare                       admin on the queue (passive: read), and
                                    write on its x-dead-letter-exchange
queue.delete, queue.purge           admin on the queue
queue.bind                          admin on the queue and read on the
                                    exchange (topic exchange: on the pattern)
queue.unbind                        admin on the queue
basic.consume, basic.get            read on the queue
basic.publish                       write on the exchange (topic exchange: on
                                    the topic; default exchange: on the queue)
exchange.declare, exchange.delete   admin on the exchange (passive: nothing)
exchange.bind, exchange.unbind      write on the destination, read on the
                                    source (a topic source: on the pattern)
==================================  ==========================================

Acks, nacks, qos, confirms, and direct reply-to (consuming
``amq.rabbitmq.reply-to``, publishing a reply to it) need nothing, as the
native ``ack`` of a held delivery and ``reply`` need nothing. A refusal is a
channel error, 403 ACCESS_REFUSED; the connection goes on.
"""

from __future__ import annotations

from minibroker.access.permissions import ADMIN, QUEUE, READ, TOPIC, WRITE, Grants
from minibroker.amqp.errors import ACCESS_REFUSED, SoftError
from minibroker.amqp.exchanges import DEFAULT, topic_name
from minibroker.amqp.exchanges import TOPIC as TOPIC_EXCHANGE

__all__ = ["ADMIN", "READ", "WRITE", "Access"]


class Access:
    """One connection's grants, asked in AMQP's terms; raises SoftError(403) when refused."""

    __slots__ = ("_grants", "user")

    def __init__(self, grants: Grants, user: str) -> None:
        self._grants = grants
        self.user = user

    def _require(self, action: str, kind: str, name: str, what: str, vhost: str) -> None:
        if not self._grants.allows(action, kind, name):
            raise SoftError(
                ACCESS_REFUSED,
                f"access to {what} in vhost '{vhost}' refused for user '{self.user}' "
                f"(principal '{self._grants.principal}' may not {action} {kind} '{name}')",
            )

    def queue(self, action: str, queue: str, vhost: str) -> None:
        self._require(action, QUEUE, queue, f"queue '{queue}'", vhost)

    def exchange(
        self, action: str, exchange: str, exchange_type: str, key: str, vhost: str
    ) -> None:
        """``action`` on exchange ``exchange`` for routing (or binding) key ``key``."""
        what = f"exchange '{exchange}'"
        if exchange == DEFAULT:
            self._require(action, QUEUE, key, f"queue '{key}'", vhost)
        elif exchange_type == TOPIC_EXCHANGE:
            self._require(action, TOPIC, topic_name(exchange, key), what, vhost)
        else:
            self._require(action, TOPIC, exchange, what, vhost)

    def exchange_itself(self, action: str, exchange: str, vhost: str) -> None:
        """``action`` on the exchange as an object (declare, delete)."""
        self._require(action, TOPIC, exchange, f"exchange '{exchange}'", vhost)
