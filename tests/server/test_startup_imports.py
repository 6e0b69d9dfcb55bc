"""What ``minibroker serve`` imports before it is ready.

prometheus-client (with its HTTP and WSGI helpers) is a tenth of the
server's start-up; it is imported when a registry is first needed (a
``--metrics-port``, or ``BrokerServer.registry``), not before.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import sys

    from minibroker.cli import serve
    from minibroker.config import ServerConfig
    from minibroker.server.app import BrokerServer

    server = BrokerServer(ServerConfig(port=0))
    print("prometheus_client" in sys.modules)
    registry = server.registry
    from prometheus_client import generate_latest

    print(b"minibroker_connections 0.0" in generate_latest(registry))
    """
)


def test_serve_imports_prometheus_only_when_metrics_are_asked_for() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
