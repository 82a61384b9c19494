"""Stripe's form encoding: `metadata[accountId]=acc-1`, `expand[0]=payment_method`, `expand[]=x`,
`invoice_settings[default_payment_method]=pm_...`, nested as deep as needed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse(text: str) -> dict[str, Any]:
    """Decode an `application/x-www-form-urlencoded` body or query string into nested dicts and
    lists (an array is a dict keyed by index while being built)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=False):
        match = _KEY.fullmatch(key)
        if match is None:
            raise FormError(f"Invalid parameter name: {key}", key)
        path = [match.group(1), *_PART.findall(match.group(2))]
        node: dict[Any, Any] = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            name: Any = part
            if i > 0 and path[0] != "metadata" and (part == "" or part.isdigit()):
                name = len(node) if part == "" else int(part)
                node.setdefault("\0array", True)
            if last:
                if isinstance(node.get(name), dict):
                    raise FormError(f"Invalid hash: {key}", path[0])
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise FormError(f"Invalid hash: {key}", path[0])
                node = child
    parsed: dict[str, Any] = _finish(root)
    return parsed


def _finish(node: dict[Any, Any]) -> Any:
    if node.pop("\0array", False):
        if not all(isinstance(k, int) for k in node):
            raise FormError("Invalid array", "")
        return [_finish(v) if isinstance(v, dict) else v for _, v in sorted(node.items())]
    return {k: (_finish(v) if isinstance(v, dict) else v) for k, v in node.items()}
