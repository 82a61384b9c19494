"""The local email endpoint's inbox page, as a person sees it: headless Chromium on real HTTP.

Chromium is required, never skipped: CI installs it (`apt-get install -y chromium`). The PNG is
checked with the standard library (zlib/struct), so no imaging dependency is needed.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import threading
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential

from devstack.email_endpoint import DEFAULT_ACCESS_KEY, EmailEndpoint, start_in_thread

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 1200, 800
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--window-size={WIDTH},{HEIGHT}",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Chromium is not installed, and the inbox page e2e tests need it: "
        "run `apt-get update && apt-get install -y chromium` (CI installs it).",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def endpoint() -> Iterator[EmailEndpoint]:
    server, _ = start_in_thread(port=0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def url(endpoint: EmailEndpoint) -> str:
    requests.delete(f"{endpoint.url}/messages", timeout=5).raise_for_status()
    return endpoint.url


def send(url: str, **content: Any) -> str:
    """Send through the real SDK; returns the operation id."""
    to = content.pop("to", [{"address": "ada@example.com", "displayName": "Ada Lovelace"}])
    client = EmailClient(url, AzureKeyCredential(DEFAULT_ACCESS_KEY))
    operation_id = str(uuid.uuid4())
    client.begin_send(
        {"senderAddress": "DoNotReply@billing.example.com", "recipients": {"to": to}, "content": content},
        operation_id=operation_id,
    ).result()
    return operation_id


def run_chromium(chromium: str, tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"profile-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout.decode("utf-8")


def dump_dom(chromium: str, tmp_path: Path, page: str) -> str:
    return run_chromium(chromium, tmp_path, "--dump-dom", page)


# -- PNG, standard library only ------------------------------------------------------------


def read_png(path: Path) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit, non-interlaced RGB/RGBA/grey PNG into rows; enough for a screenshot."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    assert header is not None, "PNG without IHDR"
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color in (0, 2, 4, 6), f"unexpected PNG format {header}"
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    prev, rows = bytearray(stride), []
    for y in range(height):
        start = y * (stride + 1)
        kind_of_filter, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind_of_filter == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind_of_filter == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind_of_filter == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + prev[i]) // 2) & 255
        elif kind_of_filter == 4:
            for i in range(stride):
                a, b = (line[i - bpp] if i >= bpp else 0), prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def grey_levels(rows: list[bytes], bpp: int, step: int = 2) -> list[int]:
    levels = []
    for row in rows[::step]:
        for x in range(0, len(row), bpp * step):
            if bpp >= 3:
                r, g, b = row[x], row[x + 1], row[x + 2]
                levels.append((299 * r + 587 * g + 114 * b) // 1000)
            else:
                levels.append(row[x])
    return levels


# -- a server that records what the email's HTML manages to request ------------------------


class _Beacon(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.hits: list[str] = []
        super().__init__(("127.0.0.1", 0), _BeaconHandler)


class _BeaconHandler(BaseHTTPRequestHandler):
    server: _Beacon
    # 1x1 transparent GIF, so an <img> pointing here loads.
    GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.send_header("Content-Length", str(len(self.GIF)))
        self.end_headers()
        self.wfile.write(self.GIF)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def beacon() -> Iterator[_Beacon]:
    server = _Beacon()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- tests ---------------------------------------------------------------------------------


def test_screenshot_of_the_inbox_is_a_real_rendered_page(chromium: str, url: str, tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:8]
    send(
        url,
        subject=f"Invoice INV-{token} is past due",
        plainText="Dear Ada,\nyour invoice is 14 days past due.",
        html=f"<h1 style='color:#b00020'>Invoice INV-{token} is past due</h1><p>Please pay EUR 120.00.</p>",
    )
    shot = tmp_path / "inbox.png"

    run_chromium(chromium, tmp_path, f"--screenshot={shot}", f"{url}/")

    assert shot.is_file() and shot.stat().st_size > 1000
    width, height, rows, bpp = read_png(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    levels = grey_levels(rows, bpp)
    mean = sum(levels) / len(levels)
    variance = sum((v - mean) ** 2 for v in levels) / len(levels)
    assert variance > 200, f"the screenshot looks blank (grey variance {variance:.1f})"
    assert len(set(levels)) > 50, "the screenshot has too few shades to be a rendered page"
    # The dark header bar and dark text are there, and so is the light page.
    assert min(levels) < 60 and max(levels) > 230


def test_inbox_dom_lists_the_message_with_subject_recipient_and_bodies(chromium: str, url: str, tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:8]
    send(url, subject="Older message", plainText="older")
    operation_id = send(
        url,
        subject=f"逾期账单提醒 INV-{token} is past due",
        to=[{"address": f"zhang.san.{token}@example.cn", "displayName": "张三"}],
        plainText="尊敬的张三:\n您的发票已逾期。",
        html="<p>尊敬的张三:您的发票 <b>已逾期</b>。</p>",
    )

    dom = dump_dom(chromium, tmp_path, f"{url}/")

    assert f"逾期账单提醒 INV-{token} is past due" in dom
    assert f"zhang.san.{token}@example.cn" in dom and "张三" in dom
    assert "尊敬的张三:\n您的发票已逾期。" in dom  # the plain text, in its <pre>
    assert re.search(r'<iframe [^>]*sandbox=""[^>]*srcdoc="[^"]*已逾期', dom)
    # Newest first: the Chinese message is listed above the older one, and selected by default.
    assert dom.index(f"INV-{token}") < dom.index("Older message")
    assert f'data-operation-id="{operation_id}"' in dom


def test_scripts_in_an_email_do_not_run_in_the_inbox(chromium: str, url: str, tmp_path: Path, beacon: _Beacon) -> None:
    beacon_url = f"http://127.0.0.1:{beacon.server_address[1]}"
    operation_id = send(
        url,
        subject="<script>document.title='PWNED-SUBJECT'</script>Script test",
        plainText="</pre><script>document.title='PWNED-TEXT'</script>",
        html=(
            "<p>Hello from the email body</p>"
            # Proves the srcdoc document was rendered: images may load in a sandboxed frame...
            f"<img src='{beacon_url}/img-loaded' alt=''>"
            # ...but its scripts must not run: neither reach out nor touch the parent page.
            f"<script>new Image().src='{beacon_url}/script-ran';"
            "parent.document.title='PWNED-PARENT';</script>"
            # An attempt to break out of the srcdoc attribute into the inbox page itself.
            "\"'></iframe><script>document.title='PWNED-BREAKOUT'</script>"
        ),
    )

    dom = dump_dom(chromium, tmp_path, f"{url}/?id={operation_id}")

    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and title.group(1) == "Local inbox (1) – ACS email endpoint"
    assert "PWNED" not in dom.split("<body", 1)[0]
    # Outside the escaped srcdoc attribute, the page has no script element at all.
    page_without_srcdoc = re.sub(r'srcdoc="[^"]*"', 'srcdoc=""', dom)
    assert "<script" not in page_without_srcdoc
    assert "Script test" in page_without_srcdoc and "&lt;script&gt;" in page_without_srcdoc
    assert re.search(r'<iframe [^>]*sandbox=""', dom)
    assert "/img-loaded" in beacon.hits, f"the email HTML was not rendered at all: {beacon.hits}"
    assert "/script-ran" not in beacon.hits
