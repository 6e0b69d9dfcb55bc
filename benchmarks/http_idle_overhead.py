"""What the HTTP face costs the native port: broker CPU per message, side by side.

    python -m benchmarks.http_idle_overhead [--messages 4000] [--rounds 5]

Starts one ``minibroker serve`` process per setting and runs the same native
workload against each in turn, round after round (ABCD ABCD ...), so that
the machine's load falls on every setting alike:

* ``no HTTP port``: the baseline;
* ``HTTP port open, idle``: ``--http-port 0``, nobody connected to it;
* ``one dashboard open``: the same, with one client (curl) reading
  ``/events`` (a snapshot rendered and sent every second);
* ``x-ray on, not matching``: tracing on for a pattern the workload's names
  never match (every frame pays the check);
* ``x-ray on, tracing all``: tracing every frame (pattern ``#``).

The workload, over one connection: ``messages`` puts (one round trip each),
fetched back and acked in batches of 100, then ``messages`` publishes to a
topic the same connection is subscribed to. The figure is the broker
process's CPU time for a round (the scheduler's run time of its threads,
/proc/PID/task/*/schedstat), divided by the messages it carried:
wall-clock rates are too noisy on a shared machine, the broker's own CPU
much less. The settings run in a new random order each round; the median
and the best round are printed per setting, with their ratios to the
baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import urllib.request
from dataclasses import dataclass, field

from benchmarks.broker_process import BrokerProcess
from minibroker.client.sync import connect_sync


def _cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` so far, in nanoseconds' precision: the scheduler's
    run time of each of its threads (/proc/PID/task/*/schedstat), where the
    user + system ticks of /proc/PID/stat count in 10 ms steps."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total / 1e9


def _http_port(broker: BrokerProcess) -> int:
    for line in broker.log:
        if "HTTP API on http://" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError("the broker did not log its HTTP port")


@dataclass
class Setting:
    name: str
    args: tuple[str, ...] = ()
    dashboard: bool = False
    xray: str | None = None
    broker: BrokerProcess | None = None
    samples: list[float] = field(default_factory=list)
    _dashboard: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.broker = BrokerProcess.start(None, *self.args, log_level="info")
        if self.dashboard:
            self._watch()
        if self.xray is not None:
            body = json.dumps({"pattern": self.xray}).encode()
            request = urllib.request.Request(
                self._http("/v1/xray"),
                data=body,
                method="PUT",
                headers={"content-type": "application/json"},
            )
            urllib.request.urlopen(request).read()

    def _http(self, path: str) -> str:
        assert self.broker is not None
        return f"http://127.0.0.1:{_http_port(self.broker)}{path}"

    def _watch(self) -> None:
        """One dashboard: a curl process reading the event stream until the
        broker stops (a process of its own: a reader thread here would take
        the GIL from the workload's client and slow it, which changes the
        broker's CPU per message too)."""
        self._dashboard = subprocess.Popen(
            ["curl", "--silent", "--no-buffer", "--output", "/dev/null", self._http("/events")]
        )

    def stop(self) -> None:
        if self._dashboard is not None:
            self._dashboard.kill()
            self._dashboard.wait()
        if self.broker is not None:
            self.broker.stop()


def _workload(port: int, messages: int) -> None:
    with connect_sync(f"minibroker://127.0.0.1:{port}") as mb:
        mb.declare_queue("bench-jobs")
        for i in range(messages):
            mb.put("bench-jobs", b"%08d" % i)
        taken = 0
        while taken < messages:
            batch = mb.fetch("bench-jobs", max_messages=100)
            mb.ack(batch)
            taken += len(batch)
        with mb.subscribe("bench.events", buffer=messages) as events:
            for i in range(messages):
                mb.publish("bench.events", b"%08d" % i)
            for _ in range(messages):
                events.get(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    http = ("--http-port", "0")
    settings = [
        Setting("no HTTP port"),
        Setting("HTTP port open, idle", http),
        Setting("one dashboard open", http, dashboard=True),
        Setting("x-ray on, not matching", http, xray="billing.#"),
        Setting("x-ray on, tracing all", http, xray="#"),
    ]
    try:
        for setting in settings:
            setting.start()
        carried = 3 * args.messages  # put + fetch/ack + publish/push
        for setting in settings:  # warm-up round, not counted
            assert setting.broker is not None
            _workload(setting.broker.port, args.messages // 4)
        order = list(settings)
        for _ in range(args.rounds):
            random.shuffle(order)  # no setting always runs right after another
            for setting in order:
                assert setting.broker is not None
                before = _cpu_seconds(setting.broker.proc.pid)
                _workload(setting.broker.port, args.messages)
                used = _cpu_seconds(setting.broker.proc.pid) - before
                setting.samples.append(used / carried * 1e6)
    finally:
        for setting in settings:
            setting.stop()
    base = statistics.median(settings[0].samples)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.rounds} rounds")
    best_base = min(settings[0].samples)
    for setting in settings:
        median = statistics.median(setting.samples)
        best = min(setting.samples)
        print(
            f"{setting.name:<26} median {median:6.1f} µs CPU/message, ratio {median / base:5.3f}"
            f"; best round {best:6.1f}, ratio {best / best_base:5.3f}"
        )


if __name__ == "__main__":
    main()
