"""The API's edge holds, probed over raw sockets against the API as `make up` serves it:
idle sockets are closed, huge heads and bodies are refused before anything reads them,
malformed times, cursors and event ids are 4xx, a hostile Host is refused, HTML pages carry
security headers, the stream cap is never exceeded, and `/ready` keeps answering."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from iot_pipeline.settings import Settings

from support.api_process import start_api, stop_api
from support.waiting import eventually

KEY = "edge-probe-key-0123456789"
LIMIT = 40  # connections the server serves at once (API_LIMIT_CONCURRENCY)
STREAMS = 3  # API_STREAM_MAX_CLIENTS


@pytest.fixture(scope="module")
def url(test_settings: Settings) -> Iterator[str]:
    process, base = start_api(
        test_settings,
        API_KEY=KEY,
        API_LIMIT_CONCURRENCY=str(LIMIT),
        API_HEADER_TIMEOUT_SECONDS="2",
        API_STREAM_MAX_CLIENTS=str(STREAMS),
        API_MAX_BODY_BYTES="65536",
    )
    yield base
    stop_api(process)


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _raw(url: str, request: bytes, read_timeout: float = 10) -> bytes:
    """Send raw bytes, read the answer until the server closes or stops talking (a server
    that answers and closes before taking everything resets the rest of the sending)."""
    with socket.create_connection(_address(url), timeout=read_timeout) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and len(answer) > 64 * 1024:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


class ReadyWatch:
    """Asks `/ready` every 50 ms on a thread while the probes run; records each answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get("/ready").status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append((status, time.monotonic() - started))
                self._stop.wait(0.05)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_idle_sockets_are_closed_and_never_starve_the_routes(url: str) -> None:
    with ReadyWatch(url) as ready:
        idle = [socket.create_connection(_address(url)) for _ in range(LIMIT + 10)]
        slow = socket.create_connection(_address(url))
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a head never finished
        for sock in [*idle, slow]:
            sock.settimeout(15)

        def closed(sock: socket.socket) -> bool:
            try:
                return sock.recv(1024) == b""
            except ConnectionResetError:
                return True

        eventually(
            lambda: all(closed(s) for s in [*idle, slow]), 30, "idle sockets closed", interval=0.1
        )
        for sock in [*idle, slow]:
            sock.close()
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    assert ready.answers
    assert all(status == 200 for status, _ in ready.answers), ready.answers
    print(f"/ready: {len(ready.answers)} answers, slowest {max(s for _, s in ready.answers):.3f}s")


def test_huge_heads_and_bodies_are_refused_before_they_are_read(url: str) -> None:
    with ReadyWatch(url) as ready:
        # an 8 MB header: refused (400) or cut off, never parsed, never a 5xx
        huge_header = b"X-Padding: " + b"a" * (8 * 1024 * 1024) + b"\r\n"
        answer = _raw(url, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + huge_header + b"\r\n")
        assert 400 <= _status(answer) < 500 or answer == b"", answer[:200]
        # a 4 MB body with a wrong key: refused on its declared length alone (the head is
        # all that is sent: the answer comes without waiting for the body)
        head = (
            b"POST /qc/overrides HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: wrong\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4194304\r\n\r\n"
        )
        assert _status(_raw(url, head)) == 413
        # the same body without a declared length (chunked): counted as it streams in
        chunk = b" " * 60_000
        chunked = (
            b"POST /qc/overrides HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: "
            + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(3))
            + b"0\r\n\r\n"
        )
        assert _status(_raw(url, chunked)) == 413
    assert all(status == 200 for status, _ in ready.answers), ready.answers


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/readings", {"start": "2026-12-01T00:00:00", "end": "2026-12-02T00:00:00Z"}),
        ("/aqi", {"start": "0001-01-01T00:00:00"}),
        ("/aqi", {"end": "9999-12-31T23:59:59"}),
        ("/readings", {"start": "0001-01-01T00:00:00+14:00"}),
        ("/aggregates", {"metric": "pm25", "end": "9999-12-31T23:59:59-14:00"}),
        ("/readings", {"cursor": "not a cursor"}),
        ("/readings", {"cursor": "WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwLCJ4Il0"}),  # [10**25, "x"]
        ("/aggregates", {"metric": "pm25", "cursor": "WyJ4IiwxXQ"}),
        ("/sensors", {"district": "x" * 5000}),
    ],
)
def test_malformed_times_and_cursors_are_4xx(url: str, path: str, params: dict[str, str]) -> None:
    answer = httpx.get(f"{url}{path}", params=params, headers={"X-API-Key": KEY}, timeout=10)
    assert answer.status_code < 500, answer.text


def test_hostile_host_is_refused_and_pages_carry_security_headers(url: str) -> None:
    assert httpx.get(f"{url}/health", headers={"Host": "evil.example"}).status_code == 400
    for page in ("/docs", "/redoc", "/dashboard"):
        answer = httpx.get(f"{url}{page}", timeout=10)
        assert answer.headers["x-content-type-options"] == "nosniff", page
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], page


def test_stream_cap_holds_under_a_burst_and_odd_event_ids_are_ignored(url: str) -> None:
    """STREAMS + 3 streams opened at once: exactly STREAMS are served (the slot is taken
    before the response starts); a non-ASCII digit `Last-Event-ID` starts a stream."""
    head = (
        b"GET /stream/readings HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: "
        + KEY.encode()
        + b"\r\nLast-Event-ID: 0-\xc2\xb9\xc2\xb3\r\n\r\n"
    )
    socks = [socket.create_connection(_address(url), timeout=10) for _ in range(STREAMS + 3)]
    for sock in socks:
        sock.sendall(head)
    statuses = sorted(_status(sock.recv(4096)) for sock in socks)
    for sock in socks:
        sock.close()
    assert statuses == [200] * STREAMS + [429] * 3
    # the slots come back once those clients are gone
    eventually(
        lambda: (
            httpx.get(f"{url}/metrics", headers={"X-API-Key": KEY}).status_code == 200
            and _open_streams(url) == 0
        ),
        30,
        "the stream slots free again",
        interval=0.1,
    )


def _open_streams(url: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": KEY}, timeout=10).text
    for line in text.splitlines():
        if line.startswith("iot_api_stream_clients "):
            return float(line.split()[-1])
    return -1.0
