"""A site's controller writes to the central database over a network link; the link drops.

The link is a real TCP proxy (the only thing standing in for a WAN here: loopback only) in
front of the central TimescaleDB. While it is cut — established connections reset, new ones
refused — the site's telemetry writer keeps accepting frames into its spool; when the link is
back the spool drains and every frame is stored exactly once, with the rig that sent it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg

from telemetry.migrate import migrate
from telemetry.records import PoseBatch
from telemetry.writer import TelemetryWriter, WriterConfig


class LinkProxy:
    """TCP 127.0.0.1:port → the cluster's unix socket; ``cut()`` / ``restore()``."""

    def __init__(self, unix_path: str) -> None:
        self.unix_path = unix_path
        self.up = True
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            u = socket.socket(socket.AF_UNIX)
            u.connect(self.unix_path)
            with self._lock:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self._srv.close()


def test_site_writer_spools_while_the_central_link_is_down(db_dsn: str, tmp_path: Path) -> None:
    migrate(db_dsn)
    host = re.search(r"host=(\S+)", db_dsn)
    port = re.search(r"port=(\d+)", db_dsn)
    db = re.search(r"dbname=(\S+)", db_dsn)
    assert host and port and db
    proxy = LinkProxy(f"{host.group(1)}/.s.PGSQL.{port.group(1)}")
    # over the "network": TCP to the proxy, which reaches the server's trusted unix socket
    remote = f"host=127.0.0.1 port={proxy.port} user=postgres dbname={db.group(1)}"
    acked: dict[uuid.UUID, int] = {}
    cfg = WriterConfig("site-remote", tmp_path / "spool", retry_interval_s=0.1,
                       max_batch_ms=10, connect_timeout_s=1.0)
    writer = TelemetryWriter(remote, cfg, on_ack=acked.update).start()
    sid = uuid.uuid4()
    seq = 0

    def send(k: int) -> None:
        nonlocal seq
        for _ in range(k):
            rt = 10.0 + (seq + np.arange(12)) / 120
            writer.submit(PoseBatch(sid, "far-rig", seq, np.rint(rt * 1e6).astype(np.int64), rt,
                                    np.ones((12, 3, 7), np.float32), np.zeros((12, 0), np.float32),
                                    np.full(12, 7, np.int32)))
            seq += 12
            time.sleep(0.005)

    try:
        send(20)
        deadline = time.monotonic() + 10
        while acked.get(sid, -1) < seq - 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proxy.cut()
        send(60)  # the link is down: the writer keeps taking frames (spool)
        deadline = time.monotonic() + 10
        while writer.stats().spool_pending_records == 0:
            assert time.monotonic() < deadline, writer.stats()
            time.sleep(0.02)
        assert writer.stats().state.value == "spooling"
        proxy.restore()
        deadline = time.monotonic() + 20
        while writer.stats().spool_pending_records or writer.stats().state.value != "database":
            assert time.monotonic() < deadline, writer.stats()
            time.sleep(0.05)
        writer.flush(10)
    finally:
        writer.close(10)
        proxy.close()
    with psycopg.connect(db_dsn) as conn:
        n, distinct, hi = conn.execute("SELECT count(*), count(DISTINCT seq), max(seq) FROM "
                                       "pose_frames WHERE session_id = %s", (sid,)).fetchone() \
            or (0, 0, 0)
    assert (n, distinct, hi) == (seq, seq, seq - 1)  # every frame once, none lost
    assert acked[sid] == seq - 1
