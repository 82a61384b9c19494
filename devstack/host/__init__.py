"""A small local Azure Functions host for Python v2 apps, because Core Tools cannot be installed here.

It imports `function_app.py` (the worker's way: app dir first on sys.path, one FunctionApp),
applies `local.settings.json` `Values` to os.environ - variables already set in the environment
win, so a launcher or a test can override any setting - and reads `host.json`
(`extensions.http.routePrefix` and `extensions.queues`).

Supported: HTTP triggers (ASP.NET-style routes, 405/404 like the host, CORS from
local.settings.json), queue triggers on Azurite/Storage with the host's batching, retry and
poison semantics, timer triggers (NCRONTAB with seconds, or TimeSpan; never overlapping; one
firing across workers thanks to a storage lock), Event Grid triggers via the webhook, the admin
endpoint that runs a non-HTTP function by hand, a `context` parameter, and
`AzureWebJobs.<name>.Disabled`. Not supported (refused at startup with a clear message): any
other trigger, any input/output binding other than the HTTP `$return`, HTTP streaming. Not
emulated: auth levels (as in Core Tools), `functionTimeout` enforcement, retry policies,
Application Insights, the timer schedule monitor (past occurrences while the host was down).

How to run it:

* CLI (recommended, what a stack launcher should use - each host gets its own process, its
  own os.environ and its own `function_app` module): `python -m devstack.host --app-dir DIR
  --port 7071`; `command(...)` builds that argv. Wait for readiness with
  `GET /admin/host/status` (200), or for the log line "Host started".
* In process: `serve(app_dir, port=...)` blocks until SIGINT/SIGTERM; or `host = Host(...)`,
  `await host.run()` and `host.stop()` from any thread. Note that this changes os.environ and
  imports the app into this interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .loader import FunctionSpec, LoadError
from .routing import RouteError
from .runtime import DEFAULT_PORT, Host, serve
from .settings import ConfigError


def command(
    app_dir: str | Path | None = None,
    *,
    port: int | None = None,
    host: str | None = None,
    http: bool = True,
    triggers: bool = True,
    python: str = sys.executable,
) -> list[str]:
    """The argv that starts a host in a subprocess (pass it to subprocess.Popen)."""
    argv = [python, "-m", "devstack.host"]
    if app_dir is not None:
        argv += ["--app-dir", str(app_dir)]
    if port is not None:
        argv += ["--port", str(port)]
    if host is not None:
        argv += ["--host", host]
    if not http:
        argv.append("--no-http")
    if not triggers:
        argv.append("--no-triggers")
    return argv


__all__ = [
    "DEFAULT_PORT",
    "ConfigError",
    "FunctionSpec",
    "Host",
    "LoadError",
    "RouteError",
    "command",
    "serve",
]
