"""Start and stop Azurite (from node_modules, pinned in package.json) for the stack and the tests.

Node is started directly, not through npx, so the PID we hold is Azurite's own.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_JS = ROOT / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
UTF8_FIX = Path(__file__).with_name("azurite_utf8.cjs")  # queue text kept whole: see the file
ACCOUNT = "devstoreaccount1"
# The well-known Azurite development key: public, documented, not a secret.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class AzuriteEndpoints:
    blob_port: int
    queue_port: int
    table_port: int
    host: str = "127.0.0.1"

    @property
    def connection_string(self) -> str:
        h = self.host
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://{h}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint=http://{h}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint=http://{h}:{self.table_port}/{ACCOUNT};"
        )


STANDARD = AzuriteEndpoints(10000, 10001, 10002)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def start(endpoints: AzuriteEndpoints, location: Path | None = None, silent: bool = True,
          access_log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Azurite; in memory unless `location` is given. Waits until all three ports answer.

    With `access_log`, Azurite's access log (one line per storage request, `$batch` counting
    once) goes to that file: the benchmark counts storage round trips with it."""
    proc = launch(endpoints, location, silent, access_log)
    try:
        wait_ready(proc, endpoints)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    return proc


def launch(endpoints: AzuriteEndpoints, location: Path | None = None, silent: bool = True,
           access_log: Path | None = None, *, new_session: bool = False) -> subprocess.Popen[bytes]:
    """Start Azurite without waiting for it (then `wait_ready`): the caller can track the
    process before anything can interrupt it. With `new_session`, Azurite leads a process group
    of its own (the stack's children do: a signal to the group reaches all of Azurite)."""
    if not AZURITE_JS.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_JS}: run `npm ci` first")
    args = [
        "node", "--require", str(UTF8_FIX), str(AZURITE_JS),
        "--blobHost", endpoints.host, "--blobPort", str(endpoints.blob_port),
        "--queueHost", endpoints.host, "--queuePort", str(endpoints.queue_port),
        "--tableHost", endpoints.host, "--tablePort", str(endpoints.table_port),
        "--disableTelemetry", "--skipApiVersionCheck", "--loose",
    ]
    if silent and access_log is None:
        args.append("--silent")
    if location is None:
        args.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(location)]
    out = open(access_log, "ab") if access_log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
                            start_new_session=new_session)


def wait_ready(proc: subprocess.Popen[bytes], endpoints: AzuriteEndpoints) -> None:
    """Wait until Azurite, started by `launch`, answers on its three ports (RuntimeError if not)."""
    deadline = time.monotonic() + 30
    ports = (endpoints.blob_port, endpoints.queue_port, endpoints.table_port)
    while not all(is_listening(p, endpoints.host) for p in ports):
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"Azurite exited with {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("Azurite did not open its ports within 30 s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running(endpoints: AzuriteEndpoints | None = None) -> Iterator[AzuriteEndpoints]:
    """An in-memory Azurite on free ports for the duration of the block (tests use this)."""
    ep = endpoints or AzuriteEndpoints(free_port(), free_port(), free_port())
    proc = start(ep)
    try:
        yield ep
    finally:
        stop(proc)
