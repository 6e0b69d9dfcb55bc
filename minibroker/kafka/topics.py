"""Kafka topics as minibroker logs: partition *p* of topic *t* is the log ``t-p``.

``t-p`` is how Kafka itself names a partition's directory, so the names in
``minibroker log stats`` read the way a Kafka operator expects. Nothing else
is stored: a topic exists while its log ``t-0`` does, and its partition
count is the number of consecutive logs ``t-0``, ``t-1``, ... . So a topic
created through Kafka survives a restart with the logs, and a log created
through another door under such a name is a Kafka topic too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from minibroker.core.log_options import LogOptions
from minibroker.core.logs import Log, Logs
from minibroker.errors import BrokerError

#: Kafka's legal topic names (``[a-zA-Z0-9._-]``, at most 249 characters).
_TOPIC_NAME: Final = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_PARTITION_LOG: Final = re.compile(r"(.+)-(0|[1-9][0-9]*)")
#: Partitions a single CreateTopics may ask for (each is a log).
MAX_PARTITIONS: Final = 1000


def partition_log(topic: str, partition: int) -> str:
    """The log that holds ``partition`` of ``topic``."""
    return f"{topic}-{partition}"


def valid_topic_name(name: str) -> bool:
    return bool(_TOPIC_NAME.fullmatch(name)) and name not in (".", "..")


@dataclass(slots=True)
class TopicLogs:
    """The Kafka view of one namespace's logs."""

    logs: Logs

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has (0: it does not exist)."""
        count = 0
        while partition_log(topic, count) in self.logs:
            count += 1
        return count

    def partition(self, topic: str, partition: int) -> Log | None:
        """The log of one partition, or None when the topic has no such partition."""
        if partition < 0:
            return None
        name = partition_log(topic, partition)
        if name not in self.logs:
            return None
        return self.logs.get(name)

    def topics(self) -> dict[str, int]:
        """Every topic with its partition count, by name."""
        found: dict[str, int] = {}
        for name in self.logs.names():
            match = _PARTITION_LOG.fullmatch(name)
            if match and match.group(2) == "0" and valid_topic_name(match.group(1)):
                topic = match.group(1)
                found[topic] = self.partition_count(topic)
        return found

    def create(self, topic: str, partitions: int, options: LogOptions, now: float) -> None:
        """Create ``partitions`` logs for ``topic`` (the caller checked it is new).

        Raises BrokerError if a log cannot be created; logs made before the
        failure are deleted again, so a topic is never left half made.
        """
        self.add_partitions(topic, partitions, options, now)

    def add_partitions(self, topic: str, count: int, options: LogOptions, now: float) -> None:
        """Grow ``topic`` to ``count`` partitions (logs made before a failure are
        deleted again, so the count never stops half way)."""
        made: list[str] = []
        try:
            for index in range(self.partition_count(topic), count):
                name = partition_log(topic, index)
                self.logs.create(name, options, now)
                made.append(name)
        except BrokerError:
            for name in made:
                self.logs.delete(name, now)
            raise

    def delete(self, topic: str, now: float) -> None:
        for index in reversed(range(self.partition_count(topic))):
            self.logs.delete(partition_log(topic, index), now)
