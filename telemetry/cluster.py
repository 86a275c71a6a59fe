"""A private PostgreSQL + TimescaleDB cluster that the lab manages itself.

The demo uses it as its embedded database (data kept between runs) and the test suite as a
throw-away server. It never touches the system's own PostgreSQL clusters:

* ``initdb`` into our data directory, ``shared_preload_libraries = 'timescaledb'``;
* the unix socket lives in the data directory, with ``trust`` for local socket connections only;
  TCP listens on 127.0.0.1 (a free port, remembered) and requires a password;
* as root, the server runs as the unprivileged ``postgres`` OS user (PostgreSQL refuses root).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

_STATE_FILE = "labctl-cluster.json"
_DEFAULT_OS_USER = "postgres"


class ClusterError(RuntimeError):
    """The managed cluster cannot be set up or reached; the message names the missing piece."""


@dataclass(frozen=True)
class PgInstallation:
    """One PostgreSQL server installation with TimescaleDB available."""

    major: int
    bindir: Path
    timescaledb_version: str


@dataclass(frozen=True)
class ClusterStatus:
    """What `labctl db status` shows."""

    running: bool
    data_dir: Path
    port: int | None
    pid: int | None
    postgres_version: str | None = None
    timescaledb_version: str | None = None
    timescaledb_license: str | None = None


def find_installation() -> PgInstallation:
    """The newest installed PostgreSQL server that has TimescaleDB, or a ClusterError saying why."""
    override = os.environ.get("LABCTL_PG_BINDIR")
    candidates: list[Path]
    if override:
        candidates = [Path(override)]
    else:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    servers = [c for c in candidates if (c / "postgres").exists() and (c / "initdb").exists()]
    if not servers:
        raise ClusterError(
            "PostgreSQL server is not installed (no initdb/postgres under /usr/lib/postgresql); "
            "run scripts/setup-system.sh as root"
        )
    for bindir in servers:
        major_text = bindir.parent.name
        major = int(major_text) if major_text.isdigit() else 0
        control = Path(f"/usr/share/postgresql/{major_text}/extension/timescaledb.control")
        if control.exists():
            version = "?"
            for line in control.read_text().splitlines():
                if line.startswith("default_version"):
                    version = line.split("=", 1)[1].strip().strip("'\"")
            return PgInstallation(major=major, bindir=bindir, timescaledb_version=version)
    majors = ", ".join(s.parent.name for s in servers)
    raise ClusterError(
        f"TimescaleDB is not installed for PostgreSQL {majors} "
        "(no timescaledb.control); run scripts/setup-system.sh as root"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ManagedCluster:
    """Start, stop and reach a private PostgreSQL + TimescaleDB cluster in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        installation: PgInstallation | None = None,
        superuser: str = "postgres",
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._requested_port = port
        self._installation = installation
        self.superuser = superuser

    # ---- paths and identities -------------------------------------------------------------
    @property
    def installation(self) -> PgInstallation:
        if self._installation is None:
            self._installation = find_installation()
        return self._installation

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def port(self) -> int | None:
        state = self._read_state()
        if state is not None:
            return int(state["port"])
        return self._requested_port

    def _os_user(self) -> str | None:
        """The OS user to run the server as: ``postgres`` when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        name = os.environ.get("LABCTL_PG_OS_USER", _DEFAULT_OS_USER)
        try:
            pwd.getpwnam(name)
        except KeyError as exc:
            raise ClusterError(
                f"running as root needs the OS user {name!r} to run PostgreSQL "
                "(installed with the postgresql package); set LABCTL_PG_OS_USER"
            ) from exc
        return name

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._os_user()
        cmd = ["runuser", "-u", user, "--", *args] if user else args
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit status {proc.returncode}"
            raise ClusterError(f"{Path(args[0]).name} failed: {last}")
        return proc

    def _read_state(self) -> dict[str, int] | None:
        try:
            data = json.loads((self.data_dir / _STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "port" in data else None

    # ---- lifecycle ----------------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> bool:
        """Create the cluster if it does not exist. Returns True when it was created now."""
        if self.initialized():
            return False
        inst = self.installation
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._os_user()
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
            probe = self._run(["test", "-x", str(self.data_dir.parent)], check=False)
            if probe.returncode != 0:
                raise ClusterError(
                    f"the OS user {user!r} cannot enter {self.data_dir.parent}; "
                    "choose a data directory outside /root (e.g. /var/lib/labctl)"
                )
        os.chmod(self.data_dir, 0o700)
        self._run(
            [
                str(inst.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                "\n# --- managed by labctl (telemetry.cluster) ---\n"
                "shared_preload_libraries = 'timescaledb'\n"
                f"unix_socket_directories = '{self.data_dir}'\n"
                "listen_addresses = '127.0.0.1'\n"
                "timescaledb.telemetry_level = off\n"
                "max_connections = 200\n"
                # Telemetry is append-mostly; a lab box has little RAM to spare for PG.
                "shared_buffers = 256MB\n"
                "max_wal_size = 2GB\n"
                "logging_collector = off\n"
            )
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# managed by labctl: trust on the unix socket only, passwords over TCP\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 scram-sha-256\n"
        )
        return True

    def start(self, timeout_s: float = 30.0) -> ClusterStatus:
        """Initialise if needed and start; safe to call when already running."""
        self.init()
        status = self.status()
        if status.running:
            return status
        state = self._read_state()
        port = self._requested_port or (state["port"] if state else None)
        if port is None or not _port_free(port):
            port = free_port()
        (self.data_dir / _STATE_FILE).write_text(json.dumps({"port": port}))
        user = self._os_user()
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(self.data_dir / _STATE_FILE, pw.pw_uid, pw.pw_gid)
        inst = self.installation
        proc = self._run(
            [
                str(inst.bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout_s)),
                "-o",
                f"-p {port}",
            ],
            check=False,
        )
        if proc.returncode != 0:
            tail = self._log_tail()
            raise ClusterError(f"PostgreSQL did not start in {self.data_dir}: {tail}")
        self._wait_ready(timeout_s)
        return self.status()

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server (`mode` as pg_ctl: smart|fast|immediate). False if it was not running."""
        if not self.initialized() or not self._pid():
            return False
        self._run(
            [str(self.installation.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir),
             "-m", mode, "-w", "-t", "60"],
        )
        return True

    def destroy(self) -> None:
        """Stop and delete the data directory (tests only)."""
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no server log"
        return " | ".join(text[-lines:]) if text else "empty server log"

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        raise ClusterError(f"PostgreSQL in {self.data_dir} not ready: {last}")

    # ---- connections --------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        """libpq DSN over the unix socket in the data directory (trust auth)."""
        port = self.port
        if port is None:
            raise ClusterError(f"cluster in {self.data_dir} was never started")
        return f"host={self.socket_dir} port={port} user={self.superuser} dbname={dbname}"

    def create_database(
        self, name: str, extensions: tuple[str, ...] = ("timescaledb",), *, exist_ok: bool = True
    ) -> str:
        """Create database `name` (with `extensions`) and return its DSN."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists and not exist_ok:
                raise ClusterError(f"database {name!r} already exists")
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            for ext in extensions:
                conn.execute(
                    psycopg.sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                        psycopg.sql.Identifier(ext)
                    )
                )
        return self.dsn(name)

    def status(self, dbname: str | None = None) -> ClusterStatus:
        """Running or not; versions and license as seen from `dbname` (where the extension is)."""
        pid = self._pid() if self.initialized() else None
        if pid is None:
            return ClusterStatus(running=False, data_dir=self.data_dir, port=self.port, pid=None)
        versions: dict[str, str] = {}
        if self._accepting():
            versions = server_versions(self.dsn("postgres"))
            if dbname and dbname != "postgres" and self._has_database(dbname):
                versions.update(server_versions(self.dsn(dbname)))
        return ClusterStatus(
            running=True,
            data_dir=self.data_dir,
            port=self.port,
            pid=pid,
            postgres_version=versions.get("postgres"),
            timescaledb_version=versions.get("timescaledb") or self.installation.timescaledb_version,
            timescaledb_license=versions.get("license"),
        )

    def _has_database(self, name: str) -> bool:
        with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    def _accepting(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


def server_versions(dsn: str) -> dict[str, str]:
    """PostgreSQL version, TimescaleDB version (if created in that db) and `timescaledb.license`."""
    out: dict[str, str] = {}
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        out["postgres"] = str(row[0]) if row else "?"
        try:
            lic = conn.execute("SHOW timescaledb.license").fetchone()
            out["license"] = str(lic[0]) if lic else "?"
        except psycopg.Error:
            conn.rollback()
            out["license"] = "n/a (extension not created in this database)"
        ext = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        if ext:
            out["timescaledb"] = str(ext[0])
    return out


def check_dsn(dsn: str) -> dict[str, str]:
    """Connect to a configured DSN and report versions; one readable ClusterError otherwise."""
    try:
        return server_versions(dsn)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot connect to the configured database: {first}") from exc
