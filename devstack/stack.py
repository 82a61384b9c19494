"""The local stack of contract §5: Azurite, the local ACS email endpoint, the sandbox gateway and
the Functions app on the project's own host, each in a process of its own.

    python -m devstack.stack                 # start everything, print the URLs, run until Ctrl-C
    python -m devstack.stack --story         # start, play the scripted story, stop

The same `LocalStack` runs the end-to-end tests, on free ports with an in-memory Azurite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import requests

from devstack import azurite

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".devstack"
DEV_ACS_KEY = "bG9jYWwtZGV2LWtleS1ub3QtYS1zZWNyZXQ="  # the local endpoint's public dev key


@dataclass(frozen=True)
class StackPorts:
    functions: int = 7071
    email: int = 7075
    gateway: int = 7076
    storage: azurite.AzuriteEndpoints = azurite.STANDARD

    @classmethod
    def free(cls) -> StackPorts:
        return cls(azurite.free_port(), azurite.free_port(), azurite.free_port(),
                   azurite.AzuriteEndpoints(azurite.free_port(), azurite.free_port(), azurite.free_port()))


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
    def connection_string(self) -> str:
        return self.ports.storage.connection_string

    @property
    def azurite_location(self) -> Path | None:
        return STATE_DIR / "azurite" if self.persist else self.storage_location

    def app_env(self) -> dict[str, str]:
        """Settings for the app processes. They override local.settings.json, as environment
        variables do under `func start`, so the stack's own ports always win."""
        return {
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
            **self.extra_env,
        }

    def start(self) -> LocalStack:
        ensure_local_settings()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        storage = self.ports.storage
        for name, port in [("functions host", self.ports.functions), ("email endpoint", self.ports.email),
                           ("sandbox gateway", self.ports.gateway), ("Azurite blob", storage.blob_port),
                           ("Azurite queue", storage.queue_port), ("Azurite table", storage.table_port)]:
            if azurite.is_listening(port):
                raise RuntimeError(f"port {port} for the {name} is taken: is another local stack running?")
        self.procs.append(("azurite", azurite.start(self.ports.storage, location=self.azurite_location,
                                                    access_log=self.storage_access_log)))
        py = sys.executable
        self._spawn("email", [py, "-m", "devstack.email_endpoint", "--port", str(self.ports.email),
                              "--access-key", DEV_ACS_KEY])
        self._spawn("gateway", [py, "-m", "devstack.sandbox_gateway", "--port", str(self.ports.gateway),
                                "--storage-connection-string", self.connection_string])
        self._spawn("functions", [py, "-m", "devstack.host", "--app-dir", str(ROOT),
                                  "--port", str(self.ports.functions)])
        for n in range(self.workers):
            self._spawn(f"worker{n + 1}", [py, "-m", "devstack.host", "--app-dir", str(ROOT), "--no-http"])
        self._wait_ready()
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        self.commands[name] = args
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, env=self.app_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc))

    def _wait_ready(self, timeout: float = 60) -> None:
        checks = {
            "functions": f"{self.functions_url}/api/health",
            "email": f"{self.email_url}/messages",
            "gateway": f"{self.gateway_url}/health",
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
            self.procs[index] = (name, azurite.start(self.ports.storage, location=self.azurite_location,
                                                     access_log=self.storage_access_log))
            return
        del self.procs[index]
        self._spawn(name, self.commands[name])

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def ensure_local_settings() -> None:
    target = ROOT / "local.settings.json"
    if not target.exists():
        shutil.copy(ROOT / "local.settings.json.example", target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--story", action="store_true", help="play the scripted story, then stop")
    parser.add_argument("--persist", action="store_true", help="keep Azurite's data in .devstack/azurite")
    parser.add_argument("--workers", type=int, default=0, help="extra queue/timer worker processes")
    args = parser.parse_args(argv)
    stack = LocalStack(persist=args.persist, workers=args.workers)
    print("starting the local stack (Azurite, email endpoint, sandbox gateway, functions host)...", flush=True)
    with stack:
        print(f"functions host: {stack.functions_url}")
        print(f"email endpoint: {stack.email_url}")
        print(f"sandbox gateway: {stack.gateway_url}")
        print(f"storage: Azurite on 127.0.0.1:10000-10002; logs in {stack.log_dir}", flush=True)
        if args.story:
            from devstack.story import play

            return play(stack)
        print("running; Ctrl-C stops everything", flush=True)
        try:
            while True:
                stack._check_alive()
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
