"""The worker of a pinned engine version: `ENV/bin/python -I -m refconv.worker_remote ADDRESS LABEL [LOG] [LOCK]`.

A plain subprocess of another environment's interpreter (a spawn child would inherit this process's
sys.path, hence the wrong framework). It connects back to the main process over a unix socket
(`multiprocessing.connection`, authkey from the environment variable REFCONV_WORKER_AUTHKEY) and then
answers exactly the messages of the spawn worker (`refconv.worker._child_main`).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from multiprocessing.connection import Client
from typing import Any

AUTHKEY_ENV = "REFCONV_WORKER_AUTHKEY"


def main(argv: list[str]) -> int:
    """Connect to the main process and serve until told to stop."""
    from refconv.worker import _child_main

    address, label = argv[0], argv[1]
    log_path = argv[2] if len(argv) > 2 and argv[2] else None
    lock_path = argv[3] if len(argv) > 3 and argv[3] else None
    authkey = bytes.fromhex(os.environ.pop(AUTHKEY_ENV, ""))
    conn = Client(address, family="AF_UNIX", authkey=authkey)
    _child_main(label, _Connection(conn), log_path, lock_path)
    return 0


class _Unpickler(pickle.Unpickler):
    """Reads NumPy 2 pickles (numpy._core.*) where NumPy 1.x calls that package numpy.core (TF <= 2.16 envs)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "numpy._core" or module.startswith("numpy._core."):
            import numpy

            if int(numpy.__version__.split(".")[0]) < 2:
                module = "numpy.core" + module[len("numpy._core"):]
        return super().find_class(module, name)


class _Connection:
    """The main process's connection, read with `_Unpickler`; everything else as is.

    Not a global alias of numpy._core: TensorFlow 2.12 crashes (SIGSEGV) on import when numpy._core exists
    beside NumPy 1.x. The other direction needs nothing: NumPy 2 still reads numpy.core pickles.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def recv(self) -> Any:
        return _Unpickler(io.BytesIO(self._conn.recv_bytes())).load()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
