"""Hostile HTTP requests against a running worker: a 4xx JSON answer each, and the worker goes on.

Sent byte for byte over a socket (an HTTP client would refuse to send most of
them). Some never reach the application: aiohttp's HTTP parser refuses a
request line or a header over 8190 bytes, more than 128 headers, an unknown or
lower-case method, a byte that may not be in a URL, a space in the path, or
bytes that are not HTTP at all, before any middleware runs. Its answer is
JSON too (``sysmon_faust.http.views``); the ``detail`` then says what the parser
refused. The others reach the views, which answer a non-GUID with 400, an
unknown path with 404 and a method a page does not have with 405.

Not in the table: a request line of a megabyte. The parser refuses it after
8190 bytes and closes the connection while the client is still sending, so
the client sees a reset (ECONNRESET) rather than the 400 — TCP's doing, not
the application's; the worker is unaffected (the last test sends one).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests import events
from tests.support import WorkerProcess, create_topic, produce, start_worker, sysmon_env

#: A GUID no process of these tests has.
UNKNOWN = "{905cc552-43ac-5c91-0000-0010b44bb703}"
#: Fullwidth digit three: a GUID look-alike that is not ASCII.
LOOKALIKE = "{905cc552-43ac-5c91-0000-0010b44bb70\uff13}"


def request(method: str, target: bytes | str, *headers: bytes) -> bytes:
    if isinstance(target, str):
        target = target.encode()
    head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: localhost", *headers]
    return b"\r\n".join([*head, b"Connection: close", b"", b""])


def get(target: bytes | str, *headers: bytes) -> bytes:
    return request("GET", target, *headers)


# (case, request bytes, statuses it may get). Where two are allowed, the
# parser decides: aiohttp's C parser refuses a method it does not know
# (400), its pure-Python one lets the router answer (405).
HOSTILE = [
    # Long paths: under the parser's 8190-byte limit the view answers; over it, the parser.
    ("path 8 kB", get("/process/" + "a" * 8000), {400}),
    ("path 10 kB", get("/process/" + "a" * 10_000), {400}),
    ("path 100 kB", get("/process/" + "a" * 100_000), {400}),
    ("ancestry path 10 kB", get("/process/" + "a" * 10_000 + "/ancestry"), {400}),
    ("activity path 10 kB", get("/process/" + "a" * 10_000 + "/activity"), {400}),
    # Not UTF-8, percent-encoded and raw.
    ("percent-encoded invalid UTF-8", get("/process/%ff%fe"), {400}),
    ("percent-encoded invalid UTF-8, ancestry", get("/process/%ff%fe/ancestry"), {400}),
    ("percent-encoded invalid UTF-8, activity", get("/process/%ff%fe/activity"), {400}),
    ("raw invalid UTF-8", get(b"/process/\xff\xfe"), {400}),
    # Not GUIDs.
    ("empty GUID", get("/process/"), {404}),
    ("empty GUID, ancestry", get("/process//ancestry"), {404}),
    ("empty GUID, activity", get("/process//activity"), {404}),
    ("null", get("/process/null"), {400}),
    ("path traversal", get("/process/../../etc/passwd"), {404}),
    ("path traversal, encoded", get("/process/" + quote("../../etc/passwd", safe="")), {400}),
    ("GUID with a character more", get(f"/process/{UNKNOWN}x"), {400}),
    ("GUID with a character more, ancestry", get(f"/process/{UNKNOWN}x/ancestry"), {400}),
    ("GUID with a character more, activity", get(f"/process/{UNKNOWN}x/activity"), {400}),
    ("GUID without dashes", get("/process/" + UNKNOWN.replace("-", "")), {400}),
    ("unicode look-alike, encoded", get("/process/" + quote(LOOKALIKE)), {400}),
    ("unicode look-alike, raw UTF-8", get(f"/process/{LOOKALIKE}".encode()), {400}),
    ("snowman", get("/process/%E2%98%83"), {400}),
    ("NUL", get("/process/%00"), {400}),
    # Injection attempts, as the GUID and in the query string (which no page reads).
    ("SQL injection", get("/process/" + quote("' OR 1=1--", safe="")), {400}),
    ("SQL injection, raw spaces", get(b"/process/' OR 1=1--"), {400}),
    ("script", get("/process/" + quote("<script>alert(1)</script>", safe="")), {400}),
    ("script, raw", get("/process/<script>alert(1)</script>"), {404}),
    ("JNDI lookup", get("/process/" + quote("${jndi:ldap://x/a}", safe="")), {400}),
    ("JNDI lookup, raw", get("/process/${jndi:ldap://x/a}"), {404}),
    ("SQL injection in the query", get(f"/process/{UNKNOWN}?id=' OR 1=1--"), {400}),
    (
        "SQL injection in the query, encoded",
        get(f"/process/{UNKNOWN}?id=%27%20OR%201%3D1--"),
        {404},
    ),
    ("script in the query", get(f"/process/{UNKNOWN}?q=<script>alert(1)</script>"), {404}),
    ("JNDI lookup in the query", get(f"/process/{UNKNOWN}?x=${{jndi:ldap://x/a}}"), {404}),
    ("NUL in the query", get(f"/process/{UNKNOWN}?x=%00&y=%ff"), {404}),
    # Methods.
    ("unknown method", request("FOO", "/health"), {400, 405}),
    ("lower-case method", request("get", "/health"), {400, 405}),
    ("DELETE", request("DELETE", f"/process/{UNKNOWN}"), {405}),
    ("PUT", request("PUT", "/stats"), {405}),
    ("POST", request("POST", "/health"), {405}),
    ("TRACE", request("TRACE", "/health"), {405}),
    ("PROPFIND", request("PROPFIND", "/health"), {405}),
    ("OPTIONS *", request("OPTIONS", "*"), {404}),
    # Headers.
    ("header 10 kB", get("/health", b"X-Big: " + b"a" * 10_000), {400}),
    ("header 100 kB", get("/health", b"X-Big: " + b"a" * 100_000), {400}),
    ("200 headers", get("/health", *(b"X-%d: a" % n for n in range(200))), {400}),
    ("NUL in a header", get("/health", b"X-A: a\x00b"), {400}),
    ("CR alone in a header", get("/health", b"X-A: a\rb"), {400}),
    ("Content-Length not a number", get("/stats", b"Content-Length: abc"), {400}),
    ("Content-Length overflow", get("/stats", b"Content-Length: " + b"9" * 30), {400}),
    ("HTML asked for", get("/no/such/page", b"Accept: text/html"), {404}),
    # Not HTTP/1.x.
    ("TLS on the HTTP port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), {400}),
    ("HTTP/9.9", b"GET /health HTTP/9.9\r\n\r\n", {400}),
    ("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", {400}),
    ("binary", b"\x00\x01\x02 garbage\r\n\r\n", {400}),
]


@pytest.fixture(scope="module")
def worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One worker for every request of this module (each case also checks it is still well)."""
    prefix = f"sf-http-hostile-{uuid.uuid4().hex[:8]}"
    base = tmp_path_factory.mktemp("http-hostile")
    env = sysmon_env(kafka_bootstrap, prefix, base / "data", partitions=2)
    create_topic(kafka_bootstrap, env["SYSMON_TOPIC_INPUT"], partitions=1)
    process = start_worker(env, base / "workers")
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def assert_json_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, object]:
    assert 400 <= status < 500, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (headers, body[:300])
    answer = json.loads(body)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
    assert answer["error"].strip(), answer
    text = body.decode("utf-8", "replace").lower()
    assert "traceback" not in text and "<html" not in text and 'file "' not in text, text[:300]
    return answer


@pytest.mark.parametrize(("raw", "statuses"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_request_gets_a_4xx_json_error(
    worker: WorkerProcess, raw: bytes, statuses: set[int]
) -> None:
    # A request larger than the server reads before it answers leaves bytes
    # unread when it closes, and the closing side's TCP stack may then send a
    # reset that overtakes the 400 (seen at 100 kB in a full run): asked
    # again, a server that answers gets through; one that always resets fails.
    for attempt in range(3):
        try:
            status, headers, body = worker.http_raw(raw)
            break
        except ConnectionResetError:
            if attempt == 2:
                raise
    assert_json_error(status, headers, body)
    assert status in statuses, (status, body[:300])
    assert worker.http("/health")[0] == 200
    assert worker.process.poll() is None


def test_worker_goes_on_after_hostile_requests(worker: WorkerProcess) -> None:
    # All of them again, back to back, and a megabyte request line (see the
    # module docstring: the client may see a reset instead of the 400).
    for _case, raw, _statuses in HOSTILE:
        assert_json_error(*worker.http_raw(raw))
    try:
        answer = worker.http_raw(get("/process/" + "a" * 1024 * 1024))
    except (ConnectionResetError, BrokenPipeError):
        answer = None  # reset by the server's TCP stack, unread bytes pending
    if answer is not None:
        assert_json_error(*answer)
    assert worker.process.poll() is None, "the worker died"
    status, health = worker.http("/health")
    assert status == 200 and health["healthy"], health

    # ... and processes events: a process and its connection, joined and looked up.
    guid = events.guid(7)
    bootstrap, topic = worker.env["KAFKA_BOOTSTRAP_SERVERS"], worker.env["SYSMON_TOPIC_INPUT"]
    produce(
        bootstrap,
        topic,
        [
            events.create("2019-03-19 15:28:13.000", guid),
            events.connect("2019-03-19 15:28:14.000", guid, 443),
        ],
        partition=0,
    )
    stats = worker.wait_for(lambda s: s["joined"] >= 1, timeout=60)
    assert stats["joined"] == 1 and stats["dead_lettered"] == 0
    status, row = worker.http(f"/process/{guid}")
    assert status == 200 and row["process_guid"] == guid, row
    status, chain = worker.http(f"/process/{guid}/ancestry")
    assert status == 200 and chain["process"]["process_guid"] == guid, chain
    # The unknown GUID of the table is still unknown: nothing above wrote anything.
    status, body = worker.http(f"/process/{UNKNOWN}")
    assert status == 404 and body["error"] == "process not found", body


def test_socket_helper_reads_a_plain_answer(worker: WorkerProcess) -> None:
    # The raw helper itself, on a request every client could send.
    status, headers, body = worker.http_raw(get("/health"))
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["healthy"] is True
    with socket.create_connection(("127.0.0.1", worker.web_port), timeout=5):
        pass  # a connection opened and closed without a request harms nothing
    assert worker.http("/health")[0] == 200


def test_the_index_lists_every_endpoint_and_each_answers(worker: WorkerProcess) -> None:
    status, index = worker.http("/")
    assert status == 200, index
    listed = [entry["endpoint"] for entry in index["endpoints"]]
    assert listed == [
        "GET /health", "GET /stats", "GET /metrics", "GET /process/{guid}",
        "GET /process/{guid}/ancestry", "GET /process/{guid}/activity",
    ]  # fmt: skip
    for endpoint in listed:
        path = endpoint.removeprefix("GET ").replace("{guid}", UNKNOWN)
        status, _ = worker.http(path)
        assert status in (200, 404), (path, status)  # 404: the unknown process, said in JSON


def test_the_banner_names_the_state_folder_the_worker_uses(worker: WorkerProcess) -> None:
    # --web-port names the worker's state folder; the banner used to name
    # the one of SYSMON_WEB_PORT instead.
    log = worker.log_path.read_text(errors="replace")
    banner = next(line for line in log.splitlines() if line.startswith("| datadir"))
    assert banner.split("|")[2].strip().endswith(f"-worker-{worker.web_port}"), banner
    assert f"-worker-{worker.web_port}/" in log.split("state in ", 1)[1].split(";")[0] + "/"
