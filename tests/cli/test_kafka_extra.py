"""A Kafka port without the ``kafka`` extra says which extra to install.

``pip install minibroker`` (or ``minibroker[testing]``) has no kio, Kafka's
codec: ``minibroker serve --kafka-port``, ``open_broker(kafka=True)``,
``run_in_thread(kafka_port=0)`` and the ``minibroker_kafka_bootstrap``
fixture then used to fail with a bare ``ModuleNotFoundError: No module named
'kio'`` (the CLI with a traceback, against its one-line-errors promise).
Each test runs Python in a subprocess with ``kio`` blocked
(``sys.modules['kio'] = None`` makes every import of it fail, as when it is
not installed).
"""

from __future__ import annotations

import subprocess
import sys

#: Runs the rest of the program as if kio were not installed.
WITHOUT_KIO = "import sys; sys.modules['kio'] = None\n"
HINT = "pip install 'minibroker[kafka]'"


def run_without_kio(program: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_KIO + program],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_with_a_kafka_port_names_the_extra_in_one_line() -> None:
    done = run_without_kio(
        "from minibroker.cli import main\n"
        "sys.exit(main(['serve', '--port', '0', '--kafka-port', '0']))\n"
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if "minibroker serve:" in line]
    assert "Kafka port" in error and HINT in error


def test_a_threaded_broker_with_a_kafka_port_names_the_extra() -> None:
    done = run_without_kio(
        "from minibroker.testing import run_in_thread\n"
        "try:\n"
        "    with run_in_thread(kafka_port=0):\n"
        "        pass\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MissingExtra ")
    assert HINT in done.stdout


def test_the_broker_without_a_kafka_port_needs_no_kio() -> None:
    done = run_without_kio(
        "from minibroker.testing import run_in_thread\n"
        "import minibroker\n"
        "with run_in_thread() as broker, minibroker.connect_sync(broker.url) as mb:\n"
        "    mb.declare_queue('jobs')\n"
        "    mb.put('jobs', b'x')\n"
        "    print(mb.queue_stats('jobs').ready)\n"
    )
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
