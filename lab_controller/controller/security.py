"""CurveZMQ with a ZAP allow-list, and the rule that plain text stays on loopback.

Keys are ZeroMQ certificate files (`zmq.auth.create_certificates`): ``NAME.key`` holds the public
key, ``NAME.key_secret`` both. The allow-list directory holds public key files: in ``rigs/`` the
rigs' keys, in ``instructors/`` the instructors' (a flat directory applies to both). The
controller's control and data sockets authenticate in ZAP domain ``rigs``, the API socket in
domain ``instructors``, so an instructor key cannot pose as a rig and vice versa.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

log = logging.getLogger(__name__)

RIG_DOMAIN = "rigs"
INSTRUCTOR_DOMAIN = "instructors"


class SecurityError(Exception):
    """A configuration that would expose plain text or cannot load its keys."""


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address or 'localhost'."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or '*' binds beyond loopback


def check_plain_allowed(endpoints: list[str], allow_plain_remote: bool) -> None:
    """Refuse plain text on a non-loopback endpoint unless explicitly allowed."""
    remote = [e for e in endpoints if not is_local_endpoint(e)]
    if remote and not allow_plain_remote:
        raise SecurityError(
            f"plain (unencrypted) endpoints beyond loopback: {', '.join(remote)}; configure "
            "controller.curve_secret_key_file or set controller.allow_plain_remote"
        )
    if remote:
        log.warning("plain text on non-loopback endpoints %s (allow_plain_remote set)", remote)


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (0600) in `directory`; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if (directory / f"{name}{suffix}").exists():
            raise SecurityError(f"{directory / (name + suffix)} exists; refusing to overwrite")
    public, secret = zmq.auth.create_certificates(directory, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_keypair(secret_file: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` file."""
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read key {secret_file}: {exc}") from exc
    if secret is None:
        raise SecurityError(f"{secret_file} holds no secret key")
    return public, secret


def load_public_key(file: Path) -> bytes:
    """The Z85 public key of a ``.key`` or ``.key_secret`` file."""
    try:
        public, _ = zmq.auth.load_certificate(file)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read key {file}: {exc}") from exc
    return public


def _allowed_dir(root: Path, domain: str) -> Path:
    sub = root / domain
    return sub if sub.is_dir() else root


def allowed_names(directory: Path) -> dict[bytes, str]:
    """Z85 public key → name (the file's stem, e.g. ``rig-07`` for ``rig-07.key``)."""
    names: dict[bytes, str] = {}
    for file in sorted(directory.glob("*.key")):
        try:
            names[load_public_key(file)] = file.stem
        except SecurityError as exc:
            log.warning("allow-list: skipping %s (%s)", file, exc)
    return names


class _NamedAuthenticator(ThreadAuthenticator):
    """ZAP handler whose User-Id is the allow-listed key's name, so HELLO's rig_id is checked."""

    names: dict[bytes, str]

    def curve_user_id(self, client_public_key: bytes) -> str:
        z = z85.encode(client_public_key)
        return self.names.get(z, z.decode("ascii"))


@dataclass
class ServerSecurity:
    """The controller's CurveZMQ server side: key pair plus a running ZAP authenticator."""

    public_key: bytes
    secret_key: bytes
    allowed_dir: Path
    authenticator: ThreadAuthenticator | None = None

    @classmethod
    def load(cls, secret_key_file: Path, allowed_keys_dir: Path) -> ServerSecurity:
        public, secret = load_keypair(secret_key_file)
        if not allowed_keys_dir.is_dir():
            raise SecurityError(f"allow-list directory {allowed_keys_dir} does not exist")
        return cls(public, secret, allowed_keys_dir)

    def start(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        """Start the ZAP handler; each domain gets its own allow-list (reloaded by restart)."""
        auth = _NamedAuthenticator(ctx, log=logging.getLogger(__name__ + ".zap"))
        auth.names = {}
        for domain in (RIG_DOMAIN, INSTRUCTOR_DOMAIN):
            auth.names.update(allowed_names(_allowed_dir(self.allowed_dir, domain)))
        auth.start()
        for domain in (RIG_DOMAIN, INSTRUCTOR_DOMAIN):
            location = _allowed_dir(self.allowed_dir, domain)
            auth.configure_curve(domain=domain, location=str(location))
        self.authenticator = auth

    def apply(self, sock: zmq.Socket[bytes], domain: str) -> None:
        """Make `sock` a CURVE server in ZAP `domain` (call before bind)."""
        sock.curve_secretkey = self.secret_key
        sock.curve_publickey = self.public_key
        sock.curve_server = True
        sock.zap_domain = domain.encode()

    def stop(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None


@dataclass(frozen=True)
class ClientSecurity:
    """A CURVE client: its own key pair and the controller's public key."""

    public_key: bytes
    secret_key: bytes
    server_public_key: bytes

    @classmethod
    def load(cls, secret_key_file: Path, server_key_file: Path) -> ClientSecurity:
        public, secret = load_keypair(secret_key_file)
        return cls(public, secret, load_public_key(server_key_file))

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make `sock` a CURVE client (call before connect)."""
        sock.curve_secretkey = self.secret_key
        sock.curve_publickey = self.public_key
        sock.curve_serverkey = self.server_public_key
