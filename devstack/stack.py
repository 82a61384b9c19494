"""The local stack of contract §5: Azurite, the local ACS email endpoint, the sandbox gateway and
the Functions app on the project's own host, each in a process of its own.

    python -m devstack.stack                 # start everything, print the URLs, run until Ctrl-C or SIGTERM
    python -m devstack.stack --story         # start, play the scripted story, stop
    python -m devstack.stack --email-quota 30,100   # the email endpoint enforces ACS-like quotas
    python -m devstack.stack --ports free    # on free ports (printed), beside another stack
    python -m devstack.stack --gateway stripe   # the app charges through the Stripe-compatible sandbox
    python -m devstack.stack --otlp          # the app exports traces, metrics and logs to a local OTLP receiver
                                             # (also with DEVSTACK_OTLP=1; `--story` always does)

The same `LocalStack` runs the end-to-end tests, on free ports with an in-memory Azurite.
SIGTERM, SIGINT and SIGHUP stop every process it started (`LocalStack.stop`), then it exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import requests

from devstack import azurite
from devstack.email_endpoint.__main__ import quota_argument
from devstack.email_endpoint.server import Quota

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".devstack"
DEV_ACS_KEY = "bG9jYWwtZGV2LWtleS1ub3QtYS1zZWNyZXQ="  # the local endpoint's public dev key
STRIPE_TEST_KEY = "sk_test_local_stack_only"  # the sandbox takes any sk_test_ key
STRIPE_WEBHOOK_SECRET = "whsec_local_stack_only_not_a_secret"


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP reached a stack that handles signals (`LocalStack.handle_signals`).
    A BaseException, as KeyboardInterrupt is, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _is_host(name: str) -> bool:
    return name == "functions" or name.startswith("worker")


STOP_ROUNDS: list[tuple[Callable[[str], bool], float]] = [
    (_is_host, 20.0),  # a host drains in its grace period (5 s), hands back, then gives up (about 13 s at most)
    (lambda name: name in ("email", "gateway", "stripe"), 5.0),
    (lambda name: not _is_host(name) and name not in ("email", "gateway", "stripe"), 5.0),  # Azurite, the rest
]
"""Who stops in which round, and how many seconds a round waits before SIGKILL."""


def _running(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child still runs, without reaping it (an unreaped leader keeps its group id,
    so `_signal_group` cannot reach a stranger)."""
    if proc.returncode is not None:
        return False
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return proc.poll() is None


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the child's process group (it leads one: `start_new_session`), unless it was reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


@dataclass(frozen=True)
class StackPorts:
    functions: int = 7071
    email: int = 7075
    gateway: int = 7076
    storage: azurite.AzuriteEndpoints = azurite.STANDARD
    stripe: int = 7077
    otlp: int = 7078

    @classmethod
    def free(cls) -> StackPorts:
        return cls(azurite.free_port(), azurite.free_port(), azurite.free_port(),
                   azurite.AzuriteEndpoints(azurite.free_port(), azurite.free_port(), azurite.free_port()),
                   azurite.free_port(), azurite.free_port())


@dataclass
class LocalStack:
    ports: StackPorts = field(default_factory=StackPorts)
    persist: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 0
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)
    log_dir: Path = STATE_DIR / "logs"
    storage_access_log: Path | None = None
    storage_location: Path | None = None
    """Azurite's data folder (for a benchmark that prepares it); `persist` uses .devstack/azurite."""
    email_quota: Quota | None = None
    """The email endpoint starts with this quota (its `PUT /quota` changes it later)."""
    gateway: str = "http"
    """`http`: the app charges through the sandbox gateway; `stripe`: through the Stripe-compatible
    sandbox (`PAYMENT_GATEWAY=stripe`), which sends its webhooks to `/api/webhooks/stripe`. The
    sandbox gateway runs either way (its URL stays in the app's settings)."""
    otlp: bool = False
    """Run the local OTLP receiver (devstack/otlp_receiver) and have the app processes export their
    traces, metrics and logs to it (contract §5: `OTEL_EXPORTER_OTLP_ENDPOINT`), with short export
    intervals so its page fills at once; an endpoint the environment already names is kept."""
    _signals: int = field(default=0, init=False, repr=False)
    _pending: int | None = field(default=None, init=False, repr=False)
    _critical: int = field(default=0, init=False, repr=False)
    _stopping: int = field(default=0, init=False, repr=False)
    _hurry: bool = field(default=False, init=False, repr=False)

    @property
    def functions_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.functions}"

    @property
    def email_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.email}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def stripe_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.stripe}"

    @property
    def otlp_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp}"

    @property
    def connection_string(self) -> str:
        return self.ports.storage.connection_string

    @property
    def azurite_location(self) -> Path | None:
        return STATE_DIR / "azurite" if self.persist else self.storage_location

    def app_env(self) -> dict[str, str]:
        """Settings for the app processes. They override local.settings.json, as environment
        variables do under `func start`, so the stack's own ports always win."""
        return {
            "PYTHON_THREADPOOL_THREAD_COUNT": "16",  # as deployed (infra/app/api.bicep), unless the environment says
            **os.environ,
            "AzureWebJobsStorage": self.connection_string,
            "BILLING_TEST_CLOCK": "enabled",
            "ACS_EMAIL_ENDPOINT": self.email_url,
            "ACS_EMAIL_ACCESS_KEY": DEV_ACS_KEY,
            "PAYMENT_GATEWAY_URL": self.gateway_url,
            "PAYMENT_GATEWAY_API_KEY": "sandbox-local-key",
            "BILLING_PAGE_URL": f"{self.functions_url}/api/billing",
            "BILLING_LINK_SIGNING_KEY": "local-only-signing-key-change-me",
            "PYTHONUNBUFFERED": "1",
            **(self._stripe_env() if self.gateway == "stripe" else {}),
            **(self._otlp_env() if self.otlp else {}),
            **self._quota_env(),
            **self.extra_env,
        }

    def _quota_env(self) -> dict[str, str]:
        """The app paces its sends to the quota the email endpoint starts with (issue 21)."""
        if self.email_quota is None:
            return {}
        return {name: str(value) for name, value in (("EMAIL_QUOTA_PER_MINUTE", self.email_quota.per_minute),
                                                     ("EMAIL_QUOTA_PER_HOUR", self.email_quota.per_hour))
                if value is not None}

    def _stripe_env(self) -> dict[str, str]:
        return {"PAYMENT_GATEWAY": "stripe", "STRIPE_API_KEY": STRIPE_TEST_KEY, "STRIPE_API_BASE": self.stripe_url,
                "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET}

    def _otlp_env(self) -> dict[str, str]:
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return {}
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BLRP_SCHEDULE_DELAY": "200",
                "OTEL_METRIC_EXPORT_INTERVAL": "1000", "OTEL_SERVICE_NAME": "past-due-billing"}

    def start(self) -> LocalStack:
        ensure_local_settings()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        storage = self.ports.storage
        for name, port in [("functions host", self.ports.functions), ("email endpoint", self.ports.email),
                           ("sandbox gateway", self.ports.gateway),
                           *([("stripe sandbox", self.ports.stripe)] if self.gateway == "stripe" else []),
                           *([("otlp receiver", self.ports.otlp)] if self.otlp else []),
                           ("Azurite blob", storage.blob_port),
                           ("Azurite queue", storage.queue_port), ("Azurite table", storage.table_port)]:
            if azurite.is_listening(port):
                raise RuntimeError(f"port {port} for the {name} is taken: is another local stack running?")
        try:
            self._start_azurite()
            self._start_app_processes()
            self._wait_ready()
        except BaseException:
            self.stop()  # a failed or interrupted start leaves nothing running
            raise
        return self

    def _start_azurite(self) -> None:
        with self._uninterrupted():  # tracked before a signal can lose it
            proc = azurite.launch(self.ports.storage, location=self.azurite_location,
                                  access_log=self.storage_access_log, new_session=True)
            self.procs.append(("azurite", proc))
        azurite.wait_ready(proc, self.ports.storage)

    def _start_app_processes(self) -> None:
        py = sys.executable
        quota = ["--quota", self.email_quota.spec()] if self.email_quota is not None else []
        if self.otlp:
            self._spawn("otlp", [py, "-m", "devstack.otlp_receiver", "--port", str(self.ports.otlp), "--quiet"])
        self._spawn("email", [py, "-m", "devstack.email_endpoint", "--port", str(self.ports.email),
                              "--access-key", DEV_ACS_KEY, *quota])
        self._spawn("gateway", [py, "-m", "devstack.sandbox_gateway", "--port", str(self.ports.gateway),
                                "--storage-connection-string", self.connection_string])
        if self.gateway == "stripe":
            self._spawn("stripe", [py, "-m", "devstack.stripe_sandbox", "--port", str(self.ports.stripe),
                                   "--webhook-url", f"{self.functions_url}/api/webhooks/stripe",
                                   "--webhook-secret", STRIPE_WEBHOOK_SECRET])
        self._spawn("functions", [py, "-m", "devstack.host", "--app-dir", str(ROOT),
                                  "--port", str(self.ports.functions)])
        for n in range(self.workers):
            self._spawn(f"worker{n + 1}", [py, "-m", "devstack.host", "--app-dir", str(ROOT), "--no-http"])

    def _spawn(self, name: str, args: list[str]) -> None:
        """Start one app process, leading a process group of its own (`stop` signals the group),
        and track it before a signal can interrupt."""
        self.commands[name] = args
        env = self.app_env()
        with open(self.log_dir / f"{name}.log", "ab") as log, self._uninterrupted():
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.procs.append((name, proc))

    def _wait_ready(self, timeout: float = 60) -> None:
        checks = {
            "functions": f"{self.functions_url}/api/health",
            "email": f"{self.email_url}/messages",
            "gateway": f"{self.gateway_url}/health",
            **({"stripe": f"{self.stripe_url}/health"} if self.gateway == "stripe" else {}),
            **({"otlp": f"{self.otlp_url}/stats"} if self.otlp else {}),
        }
        deadline = time.monotonic() + timeout
        pending = dict(checks)
        while pending:
            for name, url in list(pending.items()):
                self._check_alive()
                try:
                    if requests.get(url, timeout=2).status_code == 200:
                        del pending[name]
                except requests.RequestException:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(pending)}; see {self.log_dir}")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / (name + '.log')}")

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return next(proc for n, proc in self.procs if n == name)

    def restart(self, name: str, *, kill: bool = False, pause: float = 0) -> None:
        """Stop one process of the stack (SIGKILL with `kill`, else a graceful SIGTERM) and start
        it again `pause` seconds later with the same command, ports and data. Azurite persists (`persist`)
        every 5 s and on a graceful stop, so only a graceful stop keeps its newest writes."""
        index, proc = next((i, p) for i, (n, p) in enumerate(self.procs) if n == name)
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        time.sleep(pause)
        if name == "azurite":
            del self.procs[index]
            self._start_azurite()
            return
        del self.procs[index]
        self._spawn(name, self.commands[name])

    def stop(self) -> None:
        """Stop every process the stack started, in three rounds: the functions hosts and workers
        (SIGTERM: they stop polling, finish or hand back the queue messages in flight - which
        needs the other three - and exit within about their grace period), then the email
        endpoint and the sandbox gateway, then Azurite. A round waits at most its bound
        (`STOP_TIMEOUTS`), then SIGKILLs what is left. Each signal goes to the child's whole process
        group, so nothing it started is left behind. A signal during `stop` (see
        `handle_signals`) skips the waiting: everything still running is killed at once."""
        self._stopping += 1
        try:
            for names, bound in STOP_ROUNDS:
                procs = [proc for name, proc in self.procs if names(name)]
                for proc in procs:
                    _signal_group(proc, signal.SIGTERM)
                deadline = time.monotonic() + bound
                while not self._hurry and time.monotonic() < deadline and any(_running(p) for p in procs):
                    time.sleep(0.05)
                for proc in procs:
                    # SIGKILL the group: a straggler, or what an exited leader left behind (a
                    # leader that has exited but is not reaped yet still holds its group's id).
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
            self.procs.clear()
        finally:
            self._stopping -= 1

    def handle_signals(self) -> None:
        """Stop on SIGTERM, SIGINT and SIGHUP alike (call from the main thread, for a stack that
        runs until stopped): the first raises `Interrupted` in the main thread, so the caller
        stops the stack in a `finally` (or `with`); a start interrupted this way stops what it
        started. A later one, or one while stopping, kills what is still running without waiting.
        SIGINT or SIGHUP ignored by whoever started us (a background job, `nohup`) stay ignored."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            if sig != signal.SIGTERM and signal.getsignal(sig) is signal.SIG_IGN:
                continue
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals += 1
        if self._signals > 1:
            self._hurry = True
            return
        if self._stopping:
            return  # a graceful stop is under way already
        if self._critical:
            self._pending = signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def _uninterrupted(self) -> Iterator[None]:
        """Defer a signal's `Interrupted` to the end of the block (a child started and tracked)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def ensure_local_settings() -> None:
    target = ROOT / "local.settings.json"
    if not target.exists():
        shutil.copy(ROOT / "local.settings.json.example", target)


def app_quota_argument(value: str) -> Quota:
    """`--email-quota`: the endpoint's quota, which the app paces to as well, so each limit given
    must be one the app accepts (at least 1; the endpoint alone also takes 0: `PUT /quota`)."""
    quota = quota_argument(value)
    if 0 in (quota.per_minute, quota.per_hour):
        raise argparse.ArgumentTypeError("the app paces its sends to this quota: each limit must be at least 1")
    return quota


def main(argv: list[str] | None = None) -> int:
    summary = " ".join(__doc__.split("\n\n")[0].split())  # the docstring's first paragraph, whole
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=summary)
    parser.add_argument("--story", action="store_true", help="play the scripted story, then stop")
    parser.add_argument("--persist", action="store_true", help="keep Azurite's data in .devstack/azurite")
    parser.add_argument("--workers", type=int, default=0, help="extra queue/timer worker processes")
    parser.add_argument("--email-quota", type=app_quota_argument, metavar="PER_MINUTE[,PER_HOUR]",
                        help="the email endpoint answers 429 beyond this quota, as ACS does, and the app paces "
                             "its sends to it (EMAIL_QUOTA_PER_MINUTE/_PER_HOUR; e.g. 30,100; each at least 1)")
    parser.add_argument("--ports", choices=["standard", "free"], default="standard",
                        help="standard: 7071, 7075, 7076, 10000-10002; free: any free ports (printed at start)")
    parser.add_argument("--log-dir", type=Path, default=STATE_DIR / "logs", help="where each process logs")
    parser.add_argument("--gateway", choices=["http", "stripe"], default="http",
                        help="http: charge through the sandbox gateway; stripe: through the Stripe-compatible "
                             "sandbox (PAYMENT_GATEWAY=stripe, port 7077)")
    parser.add_argument("--otlp", action="store_true",
                        help="run the local OTLP receiver (port 7078) and export the app's telemetry to it "
                             "(also with DEVSTACK_OTLP=1; --story always does)")
    args = parser.parse_args(argv)
    otlp = args.otlp or args.story or os.environ.get("DEVSTACK_OTLP", "").lower() in ("1", "true", "yes")
    ports = StackPorts.free() if args.ports == "free" else StackPorts()
    stack = LocalStack(ports, persist=args.persist, workers=args.workers, email_quota=args.email_quota,
                       log_dir=args.log_dir, gateway=args.gateway, otlp=otlp)
    stack.handle_signals()  # SIGTERM, SIGINT (Ctrl-C), SIGHUP: stop every process, then exit
    print("starting the local stack (Azurite, email endpoint, sandbox gateway, functions host)...", flush=True)
    try:
        return _run(stack, args.story)
    except Interrupted as sig:
        print(f"\n{sig.name}: stopping the local stack", flush=True)
        return 128 + sig.signum if args.story else 0
    finally:
        stack.stop()
        print("stopped", flush=True)


def _run(stack: LocalStack, story: bool) -> int:
    stack.start()
    print(f"functions host: {stack.functions_url}")
    print(f"email endpoint: {stack.email_url}")
    print(f"sandbox gateway: {stack.gateway_url}")
    if stack.gateway == "stripe":
        print(f"stripe sandbox: {stack.stripe_url}")
    if stack.otlp:
        print(f"otlp receiver: {stack.otlp_url}")
    if stack.email_quota is not None:
        print(f"email quota: {stack.email_quota.describe()} (change it with PUT {stack.email_url}/quota)")
    storage = stack.ports.storage
    print(f"storage: Azurite on {storage.host} (blob {storage.blob_port}, queue {storage.queue_port}, "
          f"table {storage.table_port}); logs in {stack.log_dir}", flush=True)
    if story:
        from devstack.story import play

        return play(stack)
    print("running; Ctrl-C or SIGTERM stops everything", flush=True)
    while True:
        stack._check_alive()
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
