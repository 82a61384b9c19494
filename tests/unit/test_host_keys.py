"""Which keys the local host accepts at each auth level (devstack/host/keys.py)."""

from __future__ import annotations

import pytest

from devstack.host.exchange import Request
from devstack.host.keys import HostKeys, parse_keys


def request(header: str | None = None, code: str | None = None) -> Request:
    return Request("GET", "/api/x", "http://h/api/x", f"code={code}" if code else "",
                   [("x-functions-key", header)] if header else [], b"")


def test_no_master_key_means_nothing_is_checked() -> None:
    keys = HostKeys.from_settings({})
    assert not keys.enforced and keys.allows("admin", request())


def test_levels_take_the_keys_azure_takes() -> None:
    keys = HostKeys.from_settings({"DEVSTACK_MASTER_KEY": "m", "DEVSTACK_FUNCTION_KEYS": "default=f,other=g",
                                   "DEVSTACK_SYSTEM_KEYS": "eventgrid_extension=s"})
    assert keys.allows("anonymous", request())
    assert [keys.allows("function", request(k)) for k in ("f", "g", "m", "s", "x")] == [True, True, True, False, False]
    assert [keys.allows("admin", request(k)) for k in ("f", "m", "s")] == [False, True, False]
    assert [keys.allows("system", request(code=k)) for k in ("s", "m", "f")] == [True, True, False]
    assert not keys.allows("function", request()) and keys.allows("FUNCTION", request(code="f"))


def test_keys_without_a_master_key_or_without_a_value_are_refused() -> None:
    with pytest.raises(ValueError, match="master key"):
        HostKeys.from_settings({"DEVSTACK_FUNCTION_KEYS": "f"})
    with pytest.raises(ValueError, match="no value"):
        parse_keys(["default="])
    assert parse_keys(["a", "b", "x=y"]) == {"default": "a", "default2": "b", "x": "y"}
