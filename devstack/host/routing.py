"""ASP.NET-style route templates, as the Functions host matches HTTP trigger routes.

Supported: literal segments (case-insensitive), `{name}`, optional `{name?}`, defaults
`{name=value}`, catch-all `{*name}` (last segment), parameters mixed with literals inside a
segment (`{name}.{ext}`) and the common inline constraints (`{id:int}`, `{id:guid}`,
`{code:regex(^[a-z]+$)}`, `{n:range(1,9)}` ...). Among templates that match a path, the most
specific wins - literal over constrained over plain parameter over optional over catch-all,
segment by segment - and only then does the HTTP method choose, so a 405 is only answered when
some route has this path but none accepts the method.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

_PARAM = re.compile(r"\{([^{}]+)\}")
_CONSTRAINT = re.compile(r"^(?P<name>[A-Za-z]+)(?:\((?P<arg>.*)\))?$")
_LITERAL, _COMPLEX, _CONSTRAINED, _PLAIN, _OPTIONAL, _CATCH_ALL = range(6)


class RouteError(ValueError):
    """A route template this host cannot understand; raised at startup, never per request."""


def _number(kind: type[int] | type[float], lo: float | None = None, hi: float | None = None) -> Callable[[str], bool]:
    # As ASP.NET's invariant culture reads them: ASCII only (Python's int/float take any script's digits)
    shape = re.compile(r"[+-]?[0-9]+" if kind is int else r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

    def check(v: str) -> bool:
        if shape.fullmatch(v) is None:
            return False
        try:
            n = kind(v)
        except ValueError:
            return False
        return (lo is None or n >= lo) and (hi is None or n <= hi)

    return check


def _parses(parse: Callable[[str], object]) -> Callable[[str], bool]:
    def check(v: str) -> bool:
        try:
            parse(v)
        except ValueError:
            return False
        return True

    return check


def _constraint(spec: str, template: str) -> Callable[[str], bool]:
    """One inline constraint as a predicate over the (decoded) parameter value."""
    m = _CONSTRAINT.match(spec)
    if not m:
        raise RouteError(f"route {template!r}: cannot read constraint {spec!r}")
    name, arg = m["name"].lower(), m["arg"]
    args = [a.strip() for a in arg.split(",")] if arg is not None and name != "regex" else []
    simple: dict[str, Callable[[str], bool]] = {
        "int": _number(int, -(2**31), 2**31 - 1),
        "long": _number(int, -(2**63), 2**63 - 1),
        "double": _number(float),
        "float": _number(float),
        "decimal": _number(float),
        "bool": lambda v: v.lower() in ("true", "false"),
        "guid": _parses(uuid.UUID),
        "datetime": _parses(datetime.fromisoformat),
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "required": lambda v: v != "",
    }
    if name in simple and arg is None:
        return simple[name]
    try:
        if name == "regex" and arg is not None:
            rx = re.compile(arg, re.IGNORECASE)
            return lambda v: rx.search(v) is not None
        if name == "minlength" and len(args) == 1:
            return lambda v: len(v) >= int(args[0])
        if name == "maxlength" and len(args) == 1:
            return lambda v: len(v) <= int(args[0])
        if name == "length" and len(args) in (1, 2):
            lo, hi = int(args[0]), int(args[-1])
            return lambda v: lo <= len(v) <= hi
        if name in ("min", "max", "range") and len(args) in (1, 2):
            bounds = [int(a) for a in args]
            lo_ = bounds[0] if name != "max" else None
            hi_ = bounds[-1] if name != "min" else None
            return _number(int, lo_, hi_)
    except (ValueError, re.error) as exc:
        raise RouteError(f"route {template!r}: bad constraint {spec!r}: {exc}") from exc
    raise RouteError(f"route {template!r}: unsupported route constraint {spec!r}")


@dataclass(frozen=True)
class _Param:
    name: str
    group: str
    optional: bool
    catch_all: bool
    default: str | None
    checks: tuple[Callable[[str], bool], ...]


def _parse_param(body: str, group: str, template: str) -> _Param:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default = None
    if "=" in body:
        body, default = body.split("=", 1)
    optional = body.endswith("?") or default is not None
    body = body.rstrip("?")
    name, *constraints = body.split(":")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
        raise RouteError(f"route {template!r}: bad parameter name {name!r}")
    checks = tuple(_constraint(c, template) for c in constraints)
    return _Param(name, group, optional, catch_all, default, checks)


@dataclass(frozen=True)
class Route(Generic[T]):
    """A compiled template with the methods it accepts (None: any) and what it leads to."""

    template: str
    methods: frozenset[str] | None
    target: T
    regex: re.Pattern[str]
    params: tuple[_Param, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters, decoded, if `path` (relative to the prefix, no leading slash, in the
        form of `Request.route_path`: a `/` inside a segment still `%2F`) matches."""
        m = self.regex.match(path)
        if not m:
            return None
        values: dict[str, str] = {}
        for p in self.params:
            v = segment_value(m.group(p.group))
            if v is None or v == "":
                if p.default is not None:
                    values[p.name] = p.default
                elif not p.optional and not p.catch_all:
                    return None
                continue
            if not all(check(v) for check in p.checks):
                return None
            values[p.name] = v
        return values


def segment_value(matched: str | None) -> str | None:
    """A matched piece of a route path decoded: only `%25` and `%2F` are left encoded there."""
    return None if matched is None else unquote(matched)


def compile_route(template: str, methods: Iterable[str] | None, target: T) -> Route[T]:
    """Compile one template; RouteError if it is malformed or uses unsupported syntax."""
    clean = template.strip().lstrip("~").strip("/")
    segments = clean.split("/") if clean else []
    parts: list[str] = []
    params: list[_Param] = []
    precedence: list[int] = []
    for i, seg in enumerate(segments):
        sep = "/" if i else ""
        whole = _PARAM.fullmatch(seg)
        if whole:
            p = _parse_param(whole.group(1), f"p{len(params)}", template)
            params.append(p)
            if p.catch_all and i != len(segments) - 1:
                raise RouteError(f"route {template!r}: a catch-all parameter must be the last segment")
            value = ".*" if p.catch_all else "[^/]+"
            if p.optional or p.catch_all:
                parts.append(f"(?:{sep}(?P<{p.group}>{value}))?")
            else:
                parts.append(f"{sep}(?P<{p.group}>{value})")
            rank = _CATCH_ALL if p.catch_all else _OPTIONAL if p.optional else _CONSTRAINED if p.checks else _PLAIN
            precedence.append(rank)
            continue
        if "{" not in seg and "}" not in seg:
            parts.append(sep + re.escape(seg))
            precedence.append(_LITERAL)
            continue
        pieces, pos = [], 0
        for m in _PARAM.finditer(seg):
            pieces.append(re.escape(seg[pos : m.start()]))
            p = _parse_param(m.group(1), f"p{len(params)}", template)
            if p.catch_all or p.optional:
                raise RouteError(f"route {template!r}: optional and catch-all parameters must fill a segment")
            params.append(p)
            pieces.append(f"(?P<{p.group}>[^/]+?)")
            pos = m.end()
        pieces.append(re.escape(seg[pos:]))
        if "{" in seg[pos:] or "}" in seg[pos:]:
            raise RouteError(f"route {template!r}: unbalanced braces in {seg!r}")
        parts.append(sep + "".join(pieces))
        precedence.append(_COMPLEX)
    # \Z, not $: `$` also matches before a final newline, and `acct-1%0A` would route as `acct-1`
    regex = re.compile("^" + "".join(parts) + r"\Z", re.IGNORECASE | re.DOTALL)
    allowed = frozenset(m.upper() for m in methods) if methods else None
    return Route(template, allowed, target, regex, tuple(params), tuple(precedence))


@dataclass(frozen=True)
class Matched(Generic[T]):
    route: Route[T]
    params: dict[str, str]


@dataclass(frozen=True)
class NotAllowed:
    allow: tuple[str, ...]


@dataclass
class Router(Generic[T]):
    """All routes, kept in precedence order so the first match is the most specific."""

    routes: list[Route[T]] = field(default_factory=list)

    def add(self, route: Route[T]) -> None:
        self.routes.append(route)
        self.routes.sort(key=lambda r: r.precedence)

    def resolve(self, path: str, method: str) -> Matched[T] | NotAllowed | None:
        """The route for this path and method; NotAllowed (with Allow) or None (404) otherwise."""
        rel = path.strip("/")
        allow: set[str] = set()
        for route in self.routes:
            params = route.match(rel)
            if params is None:
                continue
            if route.methods is None or method.upper() in route.methods:
                return Matched(route, params)
            allow |= route.methods
        return NotAllowed(tuple(sorted(allow))) if allow else None


def split_prefix(path: str, prefix: str) -> str | None:
    """The path below the route prefix (case-insensitive), or None when outside it."""
    if not prefix:
        return path
    head = "/" + prefix.strip("/")
    if path.lower() == head.lower() or path.lower() == head.lower() + "/":
        return ""
    if path.lower().startswith(head.lower() + "/"):
        return path[len(head) :]
    return None
