"""The package version, in a leaf of its own.

The server and the protocol report it (hello answers, logs, ``--version``);
they import it from here rather than from the ``minibroker`` facade, whose
lazy names lead to the clients and the embedded broker.
"""

__version__ = "0.1.0"
