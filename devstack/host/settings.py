"""The app's configuration files, read the way the Functions host and Core Tools read them.

`local.settings.json` only exists on a developer machine: `func start` copies its `Values` into
the worker's environment, and a variable that is already set in the environment wins. We do
the same, so a test or a launcher can override one setting without editing the file.
`host.json` is the deployed configuration; we read the few parts a local host acts on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ROUTE_PREFIX = "api"

_TIMESPAN = re.compile(  # ASCII digits: `\d` takes any script's
    r"(?:(?P<days>[0-9]+)\.)?(?P<h>[0-9]{1,2}):(?P<m>[0-9]{1,2})(?::(?P<s>[0-9]{1,2}(?:\.[0-9]+)?))?")


class ConfigError(ValueError):
    """A configuration file the host cannot run with; the message says which file and why."""


def parse_timespan(value: str) -> float:
    """Seconds in a .NET TimeSpan string (`[d.]hh:mm[:ss[.fff]]`), the format host.json uses."""
    m = _TIMESPAN.fullmatch(value.strip())
    if not m:
        raise ConfigError(f"not a TimeSpan (expected [d.]hh:mm:ss): {value!r}")
    days = int(m["days"] or 0)
    return days * 86400 + int(m["h"]) * 3600 + int(m["m"]) * 60 + float(m["s"] or 0)


def is_timespan(value: str) -> bool:
    return _TIMESPAN.fullmatch(value.strip()) is not None


@dataclass(frozen=True)
class LocalSettings:
    """What `local.settings.json` holds that the host acts on."""

    values: dict[str, str] = field(default_factory=dict)
    http_port: int | None = None
    cors: tuple[str, ...] = ()
    cors_credentials: bool = False


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the real host's defaults (times in seconds)."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostSettings:
    """What `host.json` holds that the host acts on."""

    route_prefix: str = DEFAULT_ROUTE_PREFIX
    queues: QueueOptions = field(default_factory=QueueOptions)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def _as_setting(value: Any) -> str:
    """Values are strings in Core Tools; tolerate JSON booleans and numbers as their text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_local_settings(app_dir: Path) -> LocalSettings:
    """Read `local.settings.json` from the app dir; an absent file is an empty one."""
    path = app_dir / "local.settings.json"
    if not path.exists():
        return LocalSettings()
    data = _read_json(path)
    if data.get("IsEncrypted"):
        raise ConfigError(f"{path}: IsEncrypted is true; decrypt it (`func settings decrypt`) to run locally")
    values = {str(k): _as_setting(v) for k, v in (data.get("Values") or {}).items() if v is not None}
    host = data.get("Host") or {}
    port = host.get("LocalHttpPort")
    cors = tuple(o.strip() for o in str(host.get("CORS", "")).split(",") if o.strip())
    return LocalSettings(
        values=values,
        http_port=int(port) if port not in (None, "") else None,
        cors=cors,
        cors_credentials=bool(host.get("CORSCredentials", False)),
    )


def apply_values(values: Mapping[str, str], environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Put settings into the environment unless already set there; return the names applied."""
    applied = []
    for name, value in values.items():
        if name not in environ:
            environ[name] = value
            applied.append(name)
    return applied


def _queue_options(raw: Mapping[str, Any]) -> QueueOptions:
    lower = {k.lower(): v for k, v in raw.items()}
    batch = int(lower.get("batchsize", 16))
    if not 1 <= batch <= 32:
        raise ConfigError(f"host.json extensions.queues.batchSize must be 1..32, got {batch}")
    encoding = str(lower.get("messageencoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise ConfigError(f"host.json extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
    return QueueOptions(
        batch_size=batch,
        new_batch_threshold=int(lower.get("newbatchthreshold", batch // 2)),
        max_dequeue_count=int(lower.get("maxdequeuecount", 5)),
        visibility_timeout=parse_timespan(str(lower.get("visibilitytimeout", "00:00:00"))),
        max_polling_interval=parse_timespan(str(lower.get("maxpollinginterval", "00:01:00"))),
        message_encoding=encoding,
    )


def load_host_json(app_dir: Path) -> HostSettings:
    """Read `host.json` from the app dir; an absent file means every default."""
    path = app_dir / "host.json"
    if not path.exists():
        return HostSettings()
    data = _read_json(path)
    extensions = data.get("extensions") or {}
    http = extensions.get("http") or {}
    prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
    return HostSettings(
        route_prefix=str(prefix).strip("/"),
        queues=_queue_options(extensions.get("queues") or {}),
    )


def resolve_app_setting(value: str, environ: Mapping[str, str] = os.environ) -> str:
    """Expand `%Name%` binding expressions from app settings, as the host does for queue names
    and schedules; an unknown name is a startup error there, and here."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            raise ConfigError(f"app setting {name!r} used in {value!r} is not set")
        return environ[name]

    return re.sub(r"%([^%]+)%", sub, value)
