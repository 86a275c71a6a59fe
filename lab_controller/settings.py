"""One settings model for the whole lab: environment (``LABCTL_*``), an optional TOML file, defaults.

Precedence (highest first): environment variables, the TOML file, the defaults below.
Nested fields use ``__`` in environment names, e.g. ``LABCTL_DATABASE__DSN``.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_TOML_FILE: ContextVar[Path | None] = ContextVar("labctl_toml_file", default=None)


def default_state_dir() -> Path:
    """Where the lab keeps its state (managed database, spools) when nothing is configured.

    As root the data lives under /var/lib/labctl, because the managed PostgreSQL runs as the
    unprivileged ``postgres`` user, who cannot enter /root.
    """
    override = os.environ.get("LABCTL_STATE_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/lib/labctl")
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "labctl"


class DatabaseSettings(BaseModel):
    """Where telemetry goes: a configured DSN, or the managed (embedded) cluster."""

    dsn: SecretStr | None = Field(
        default=None, description="PostgreSQL/TimescaleDB DSN; unset = use the managed cluster"
    )
    managed_dir: Path = Field(
        default_factory=lambda: default_state_dir() / "pgdata",
        description="data directory of the managed cluster",
    )
    managed_port: int | None = Field(
        default=None, description="port of the managed cluster (default: a free port, kept)"
    )
    database: str = Field(default="labctl", description="database name in the managed cluster")


class ControllerSettings(BaseModel):
    """Endpoints and timing of the lab controller."""

    control_endpoint: str = "tcp://127.0.0.1:5555"
    data_endpoint: str = "tcp://127.0.0.1:5556"
    api_endpoint: str = "tcp://127.0.0.1:5557"
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    heartbeat_liveness: int = Field(default=3, ge=1, description="missed beats before dead")
    interrupted_grace_s: float = Field(default=30.0, ge=0)
    allow_plain_remote: bool = Field(
        default=False, description="allow unencrypted endpoints on non-loopback addresses"
    )
    curve_secret_key_file: Path | None = None
    curve_allowed_keys_dir: Path | None = None
    realtime_priority: int | None = Field(
        default=None, ge=1, le=99,
        description="SCHED_RR priority of the controller loop and its ZeroMQ threads "
                    "(needs root or CAP_SYS_NICE; refused: runs normally, with a warning)",
    )


class LabSettings(BaseSettings):
    """The effective configuration of one lab (one controller, one site)."""

    model_config = SettingsConfigDict(
        env_prefix="LABCTL_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    site_id: str = Field(default="site-01", min_length=1, max_length=64)
    lab_id: str = Field(default="lab-01", min_length=1, max_length=64)
    state_dir: Path = Field(default_factory=default_state_dir)
    spool_dir: Path = Field(default_factory=lambda: default_state_dir() / "spool")
    dashboards_dir: Path = Field(default_factory=lambda: default_state_dir() / "dashboards")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    grafana_url: str | None = None
    grafana_token: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _TOML_FILE.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class ConfigFileError(ValueError):
    """The configuration file is missing or cannot be parsed."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> LabSettings:
    """Read the effective settings: env > ``config_file`` (or ./labctl.toml if present) > defaults."""
    path: Path | None
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigFileError(f"configuration file not found: {path}")
    else:
        candidate = Path("labctl.toml")
        path = candidate if candidate.is_file() else None
    token = _TOML_FILE.set(path)
    try:
        return LabSettings(**overrides)
    except ValueError as exc:
        where = f" (file {path})" if path else ""
        raise ConfigFileError(f"invalid configuration{where}: {exc}") from exc
    finally:
        _TOML_FILE.reset(token)


def masked_dump(settings: LabSettings) -> dict[str, Any]:
    """The settings as a JSON-able dict with secrets masked (passwords inside DSNs too)."""
    data = settings.model_dump(mode="json")
    dsn = settings.database.dsn
    if dsn is not None:
        data["database"]["dsn"] = mask_dsn(dsn.get_secret_value())
    if settings.grafana_token is not None:
        data["grafana_token"] = "**********"
    return data


def mask_dsn(dsn: str) -> str:
    """Hide the password of a URL or key=value DSN."""
    import re

    masked = re.sub(r"(://[^:/@]+:)([^@]*)(@)", r"\1****\3", dsn)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1****", masked)
