"""Function keys, checked the way the Functions host in Azure checks them, when given any.

`func start` checks no key, and neither does this host by default. Given keys (the flags
`--master-key`, `--function-key`, `--system-key` or the settings `DEVSTACK_MASTER_KEY`,
`DEVSTACK_FUNCTION_KEYS`, `DEVSTACK_SYSTEM_KEYS`, each list comma-separated `name=value` or bare
values), it enforces auth levels as Azure does:

- a key comes in the `x-functions-key` header or the `code` query parameter;
- `anonymous` routes need none;
- `function` routes take a function (host) key or the master key;
- `admin` routes, and the host's `/admin/...` endpoints, take the master key only;
- the Event Grid webhook takes a system key (Azure's is named `eventgrid_extension`) or the master key;
- anything else answers 401 with an empty body.

Keys are compared in constant time; they are never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .exchange import Reply, Request

ANONYMOUS, FUNCTION, ADMIN, SYSTEM = "anonymous", "function", "admin", "system"
SETTINGS = {"master": "DEVSTACK_MASTER_KEY", "function": "DEVSTACK_FUNCTION_KEYS", "system": "DEVSTACK_SYSTEM_KEYS"}


def parse_keys(values: Iterable[str]) -> dict[str, str]:
    """`name=value` or bare `value` items (bare ones are named `default`, `default2`, ...)."""
    keys: dict[str, str] = {}
    for item in values:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                name, value = f"default{len(keys) + 1 if keys else ''}", part
            if not value:
                raise ValueError(f"key {name!r} has no value")
            keys[name.strip()] = value.strip()
    return keys


@dataclass(frozen=True)
class HostKeys:
    """The keys a host checks; with no master key nothing is checked (as under `func start`)."""

    master: str | None = None
    function: tuple[str, ...] = ()
    system: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, environ: Mapping[str, str], master: str | None = None,
                      function: Iterable[str] = (), system: Iterable[str] = ()) -> HostKeys:
        """Flags first, then the settings. Function or system keys without a master key are an
        error: Azure always has a master key, and a half-enforcing host would mislead."""
        master = master or environ.get(SETTINGS["master"]) or None
        fkeys = parse_keys([*function, environ.get(SETTINGS["function"], "")])
        skeys = parse_keys([*system, environ.get(SETTINGS["system"], "")])
        if (fkeys or skeys) and not master:
            raise ValueError(f"function or system keys need a master key too ({SETTINGS['master']} or --master-key)")
        return cls(master, tuple(fkeys.values()), tuple(skeys.values()))

    @property
    def enforced(self) -> bool:
        return self.master is not None

    def allows(self, level: str, request: Request) -> bool:
        """Whether the request carries a key good enough for `level` (always, when not enforced)."""
        level = level.lower()
        if not self.enforced or level == ANONYMOUS:
            return True
        given = request.header("x-functions-key") or request.query().get("code") or ""
        accepted = {FUNCTION: (*self.function,), SYSTEM: (*self.system,)}.get(level, ())
        return any(_same(given, key) for key in (self.master, *accepted) if key)

    def refuse(self, level: str, request: Request) -> Reply | None:
        """A 401 reply when the request may not pass at `level`; None when it may."""
        return None if self.allows(level, request) else Reply.empty(401)


def _same(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), key.encode("utf-8", "replace"))
