"""Sharing one benchmark folder between processes: owner ids and lease renewal.

A benchmark process claims a run in the store (:meth:`ResultStore.claim`) before training
it, with a lease of ``lease_s`` seconds. While the process lives, a :class:`Heartbeat`
thread pushes the expiry of all its leases forward every ``lease_s / 4`` seconds; when the
process dies (even by ``kill -9``) its leases run out and the runs it held are claimable
again. A stored row releases its claim; the process drops its remaining claims on exit.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

__all__ = ["DEFAULT_LEASE_S", "Heartbeat", "new_owner"]

DEFAULT_LEASE_S = 60.0


def new_owner() -> str:
    """A name for this benchmark process, unique across hosts: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """Renews ``owner``'s leases in the database at ``path`` until :meth:`stop`.

    A context manager; it uses its own SQLite connection (in its own thread).
    """

    def __init__(self, path: str | os.PathLike[str], owner: str, lease_s: float) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s!r}")
        self.path, self.owner, self.lease_s = Path(path), owner, float(lease_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sepneuron-lease", daemon=True)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self.lease_s / 4)
        try:
            while not self._stop.wait(self.lease_s / 4):
                try:
                    with conn:
                        conn.execute("UPDATE claims SET expires = ? WHERE owner = ?",
                                     (time.time() + self.lease_s, self.owner))
                except sqlite3.OperationalError:  # locked for a while: try again next beat
                    pass
        finally:
            conn.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __exit__(self, *exc: object) -> None:
        self.stop()
