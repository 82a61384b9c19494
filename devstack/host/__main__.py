"""`python -m devstack.host`: run a v2 Python Functions app locally, in place of `func start`.

    python -m devstack.host [--app-dir DIR] [--port 7071] [--host 127.0.0.1]
                            [--no-http | --no-triggers] [--grace 5] [--access-log] [-v]
                            [--master-key KEY [--function-key [NAME=]KEY ...] [--system-key NAME=KEY ...]]

Without keys, no key is checked (as under `func start`); with a master key, auth levels are
enforced as in Azure (see `devstack/host/keys.py`; the settings `DEVSTACK_MASTER_KEY`,
`DEVSTACK_FUNCTION_KEYS` and `DEVSTACK_SYSTEM_KEYS` do the same).

The working directory becomes the app dir, as for the real worker (relative paths in the app
resolve the same way). Exit status: 0 after a signal-initiated shutdown, 1 when the app cannot
be loaded or the port cannot be bound, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .keys import HostKeys
from .loader import LoadError
from .logs import configure_logging
from .routing import RouteError
from .runtime import DEFAULT_GRACE, Host
from .settings import ConfigError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m devstack.host", description="Local Azure Functions host (Python v2 apps)."
    )
    p.add_argument("--app-dir", default=".", help="folder with function_app.py, host.json, local.settings.json")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: Host.LocalHttpPort or 7071; 0 = any)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--no-http", action="store_true", help="run only queue and timer triggers (a worker)")
    mode.add_argument("--no-triggers", action="store_true", help="run only HTTP (incl. admin and Event Grid)")
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE, help="seconds in-flight work gets at shutdown")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request (uvicorn access log)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--master-key", help="enforce auth levels; this key passes every level (admin routes need it)")
    p.add_argument("--function-key", action="append", default=[], help="[NAME=]KEY passing auth level function")
    p.add_argument("--system-key", action="append", default=[], help="NAME=KEY for the Event Grid webhook")
    return p.parse_args(argv)


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    log = logging.getLogger("devstack.host")
    keys = None
    if args.master_key or args.function_key or args.system_key:
        try:
            keys = HostKeys.from_settings(os.environ, args.master_key, args.function_key, args.system_key)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    host = Host(
        args.app_dir,
        host=args.host,
        port=args.port,
        http=not args.no_http,
        triggers=not args.no_triggers,
        grace=args.grace,
        access_log=args.access_log,
        keys=keys,
    )
    # A SIGTERM while the app is still importing stops the host at once; once it runs, the host's
    # own handler drains (see runtime.py).
    signal.signal(signal.SIGTERM, _stop_before_start)
    try:
        os.chdir(host.app_dir)
        host.load()
    except (LoadError, ConfigError, RouteError) as exc:
        log.error("Cannot load the app: %s", exc)
        return 1
    except Exception:
        log.exception("The app failed to import")
        return 1
    try:
        asyncio.run(host.run())
    except OSError as exc:
        log.error("Cannot start the host: %s", exc)
        return 1
    if host.abandoned or host.stuck_threads:
        # Their threads cannot be killed, and the interpreter would wait for them at exit.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
