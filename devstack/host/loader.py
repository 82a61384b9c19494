"""Import a v2 `function_app.py` and turn its functions into plain descriptions the host runs.

The Python worker indexes the app exactly once; `FunctionApp.get_functions()` even refuses a
second call. So we enumerate once, copy out what we need (JSON binding dicts, not the enum-laden
objects) and validate it here, at startup: a binding this host cannot honour must fail loudly
now rather than be silently ignored at the first invocation.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.functions import _abc as abc
from azure.functions.decorators.function_app import FunctionRegister

from .settings import ConfigError, resolve_app_setting

log = logging.getLogger("devstack.host")

HTTP, QUEUE, TIMER, EVENT_GRID = "httpTrigger", "queueTrigger", "timerTrigger", "eventGridTrigger"
SUPPORTED_TRIGGERS = (HTTP, QUEUE, TIMER, EVENT_GRID)

# The worker's check: a trigger parameter's annotation must be one of these (or a subclass).
_EXPECTED_TYPES: dict[str, tuple[type, ...]] = {
    HTTP: (abc.HttpRequest,),
    QUEUE: (abc.QueueMessage,),
    TIMER: (abc.TimerRequest,),
    EVENT_GRID: (abc.EventGridEvent, abc.CloudEvent),
}


class LoadError(RuntimeError):
    """The app cannot be run by this host; the message names the function and the reason."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function as the host sees it: its trigger binding (as JSON) and how to call it."""

    name: str
    trigger: str
    binding: dict[str, Any]
    user_function: Callable[..., Any]
    is_async: bool
    wants_context: bool

    @property
    def arg_name(self) -> str:
        return str(self.binding["name"])

    def describe(self) -> str:
        """The one-line summary printed at startup, in the spirit of `func start`."""
        b = self.binding
        if self.trigger == QUEUE:
            connection = b.get("connection") or "AzureWebJobsStorage"
            return f"queueTrigger (queue: {b.get('queueName')}, connection: {connection})"
        if self.trigger == TIMER:
            startup = ", runOnStartup" if b.get("runOnStartup") else ""
            return f"timerTrigger (schedule: {b.get('schedule')}{startup})"
        if self.trigger == EVENT_GRID:
            return "eventGridTrigger"
        return "httpTrigger"


def import_app(app_dir: Path, script_file: str | None = None) -> FunctionRegister:
    """Import the script (`PYTHON_SCRIPT_FILE_NAME`, default `function_app.py`) with the app dir
    first on sys.path, as the worker does, and return its single FunctionApp."""
    script = app_dir / (script_file or os.environ.get("PYTHON_SCRIPT_FILE_NAME") or "function_app.py")
    if not script.is_file():
        raise LoadError(f"no {script.name} in {app_dir}")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    module_name = script.stem
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    apps = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
    if len(apps) != 1:
        raise LoadError(f"{script} must define exactly one FunctionApp at module level, found {len(apps)}")
    return apps[0]


def _is_disabled(name: str) -> bool:
    """`AzureWebJobs.<name>.Disabled` is how an app setting switches one function off."""
    value = os.environ.get(f"AzureWebJobs.{name}.Disabled", "")
    return value.strip().lower() in ("1", "true")


def _check_annotation(name: str, fn: Callable[..., Any], arg: str, trigger: str) -> None:
    """Refuse an annotation the worker would refuse (e.g. `msg: str` on a queue trigger)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return  # unresolvable forward references: the worker would fail too, but say nothing here
    hint = hints.get(arg)
    if hint is None or not isinstance(hint, type):
        return
    if not issubclass(hint, _EXPECTED_TYPES[trigger]):
        expected = " or ".join(t.__name__ for t in _EXPECTED_TYPES[trigger])
        raise LoadError(f"function {name}: parameter {arg!r} is annotated {hint.__name__}, {trigger} passes {expected}")


def _spec(f: Any) -> FunctionSpec:
    name = str(f.get_function_name())
    trigger = f.get_trigger().get_binding_name()
    bindings = [json.loads(b) for b in f.get_raw_bindings()]
    fn = f.get_user_function()
    if trigger not in SUPPORTED_TRIGGERS:
        raise LoadError(f"function {name}: trigger {trigger!r} is not supported (only {', '.join(SUPPORTED_TRIGGERS)})")
    if getattr(f, "http_type", "function") != "function":
        raise LoadError(f"function {name}: http_type {f.http_type!r} (HTTP streaming) is not supported")
    trigger_binding = next(b for b in bindings if b["type"] == trigger)
    for key in ("queueName", "schedule"):
        if isinstance(trigger_binding.get(key), str):
            try:
                trigger_binding[key] = resolve_app_setting(trigger_binding[key])
            except ConfigError as exc:
                raise LoadError(f"function {name}: {exc}") from exc
    for b in bindings:
        if b is trigger_binding or (trigger == HTTP and b["type"] == "http" and b["name"] == "$return"):
            continue
        raise LoadError(
            f"function {name}: binding {b['name']!r} of type {b['type']!r} is not supported by the local "
            "host (only trigger bindings and the HTTP $return); use the SDK client in the function instead"
        )
    params = inspect.signature(fn).parameters
    arg = str(trigger_binding["name"])
    if arg not in params:
        raise LoadError(f"function {name}: the trigger binds {arg!r} but the function has no such parameter")
    extra = [p for p in params if p not in (arg, "context")]
    if extra:
        raise LoadError(f"function {name}: parameters {extra} are not bound to anything")
    _check_annotation(name, fn, arg, trigger)
    return FunctionSpec(
        name=name,
        trigger=trigger,
        binding=trigger_binding,
        user_function=fn,
        is_async=inspect.iscoroutinefunction(fn),
        wants_context="context" in params,
    )


def load_functions(app: FunctionRegister) -> list[FunctionSpec]:
    """Enumerate the app (once: a second `get_functions()` raises) and validate every function."""
    specs = []
    for f in app.get_functions():
        spec = _spec(f)
        if _is_disabled(spec.name):
            log.info("Function %s is disabled by AzureWebJobs.%s.Disabled", spec.name, spec.name)
            continue
        specs.append(spec)
    return specs
