"""Phase markers for callgrind: C functions whose inclusive cost is a phase's cost.

Python 3.11 functions are invisible to callgrind (it sees the interpreter's
C functions), so ``benchmarks/amqp_callgrind.py`` wraps a few broker methods
in ``mb_phase_<name>`` functions of a tiny C extension built here with gcc:
each just calls the method it wraps, and callgrind's inclusive cost of it is
what that method cost, everything it called included.

Run as a script (``python benchmarks/phase_marks.py MARKS_DIR serve ...``) it
starts ``minibroker serve`` with the methods wrapped. It imports only the
standard library before that, so it works against any source tree on
``PYTHONPATH`` (a baseline's as well as this one's).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

PHASES = ("shell", "input", "route", "put", "deliver", "write")

_MARKS_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define MARK(name) \
    PyObject *mb_phase_##name(PyObject *self, PyObject *const *args, Py_ssize_t n) { \
        return PyObject_Vectorcall(args[0], args + 1, n - 1, NULL); }
MARK(shell) MARK(input) MARK(route) MARK(put) MARK(deliver) MARK(write)
static PyMethodDef methods[] = {
    {"shell", (PyCFunction)(void (*)(void))mb_phase_shell, METH_FASTCALL, NULL},
    {"input", (PyCFunction)(void (*)(void))mb_phase_input, METH_FASTCALL, NULL},
    {"route", (PyCFunction)(void (*)(void))mb_phase_route, METH_FASTCALL, NULL},
    {"put", (PyCFunction)(void (*)(void))mb_phase_put, METH_FASTCALL, NULL},
    {"deliver", (PyCFunction)(void (*)(void))mb_phase_deliver, METH_FASTCALL, NULL},
    {"write", (PyCFunction)(void (*)(void))mb_phase_write, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "mb_phase_marks", NULL, -1, methods};
PyMODINIT_FUNC PyInit_mb_phase_marks(void) { return PyModule_Create(&module); }
"""


def build_marks(directory: Path) -> None:
    source = directory / "mb_phase_marks.c"
    source.write_text(_MARKS_C)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O1",
            "-g",
            f"-I{sysconfig.get_paths()['include']}",
            str(source),
            "-o",
            str(directory / f"mb_phase_marks{suffix}"),
        ],
        check=True,
    )


def install_marks(directory: str) -> None:
    """In the server process: wrap the phase methods in the marker functions."""
    sys.path.insert(0, directory)
    import mb_phase_marks as marks  # type: ignore[import-not-found]

    from minibroker.amqp.channel import Channel
    from minibroker.amqp.connection import AmqpSession
    from minibroker.amqp.consumers import Consumers
    from minibroker.core.queues import Queue
    from minibroker.protocol.session import Session
    from minibroker.server.connection import Connection, ReadyConnections

    def wrap(cls: type, name: str, mark: Callable[..., Any]) -> None:
        original = cls.__dict__[name]

        def marked(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                return mark(functools.partial(original, **kwargs), *args)
            return mark(original, *args)

        setattr(cls, name, marked)

    wrap(Connection, "_dispatch", marks.shell)
    wrap(AmqpSession, "receive_data", marks.input)
    wrap(Session, "receive_data", marks.input)
    wrap(Channel, "_route", marks.route)
    wrap(Session, "_dispatch", marks.route)
    wrap(Queue, "put", marks.put)
    wrap(Consumers, "release", marks.deliver)
    wrap(Session, "resolve", marks.deliver)
    wrap(ReadyConnections, "flush", marks.write)


def serve_marked() -> None:
    """``python benchmarks/phase_marks.py MARKS_DIR serve ...``: the server, marked."""
    directory = sys.argv[1]
    install_marks(directory)
    from minibroker.cli import main

    sys.argv = ["minibroker", *sys.argv[2:]]
    main()


if __name__ == "__main__":
    serve_marked()
