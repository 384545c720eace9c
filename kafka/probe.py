#!/usr/bin/env python3
"""Stdlib-only readiness probe for a Kafka broker.

Usage: probe.py HOST PORT [--wait SECONDS] [--pid PID] [--brokers N] [--broker-id ID]

Sends an ApiVersions v0 request and then a non-flexible Metadata request
(v1..v8, at a version the broker advertises) and succeeds only when the
broker lists at least one live broker and a controller, i.e. it is
registered and unfenced and clients can actually use it.

In a cluster a node answers with the brokers it knows of, itself or not:
``--broker-id`` also wants that node among them (the node asked is itself
registered and unfenced), ``--brokers`` at least N of them (the whole
cluster is).

Exit codes: 0 ready, 1 not ready (after --wait, if given), 3 the process
given with --pid died while waiting.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

API_METADATA = 3
API_VERSIONS = 18
CLIENT_ID = b"kafka.sh-probe"


class ProbeError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    # Request header v1: api_key, api_version, correlation_id, client_id (nullable string).
    header = struct.pack(">hhih", api_key, version, corr, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if size < 4 or size > 64 * 1024 * 1024:
        raise ProbeError(f"bad response size {size}")
    resp = _recv_exact(sock, size)
    (rcorr,) = struct.unpack_from(">i", resp, 0)
    if rcorr != corr:
        raise ProbeError(f"correlation id mismatch ({rcorr} != {corr})")
    return resp[4:]  # response header v0 is just the correlation id


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s


def api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    r = _Reader(_request(sock, API_VERSIONS, 0, 1, b""))
    err = r.take(">h")
    if err != 0:
        raise ProbeError(f"ApiVersions error code {err}")
    n = r.take(">i")
    out = {}
    for _ in range(n):
        key, lo, hi = r.take(">hhh")
        out[key] = (lo, hi)
    if not out:
        raise ProbeError("ApiVersions returned no APIs")
    return out


def metadata(sock: socket.socket, version: int) -> tuple[list[tuple[int, str, int]], int]:
    body = struct.pack(">i", 0)  # topics: empty array (no topic metadata)
    if version >= 4:
        body += b"\x00"  # allow_auto_topic_creation
    if version >= 8:
        body += b"\x00\x00"  # include cluster/topic authorized operations
    r = _Reader(_request(sock, API_METADATA, version, 2, body))
    if version >= 3:
        r.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        host = r.string() or ""
        port = r.take(">i")
        r.string()  # rack
        brokers.append((node_id, host, port))
    if version >= 2:
        r.string()  # cluster_id
    controller = r.take(">i")
    return brokers, controller


def probe_once(
    host: str,
    port: int,
    timeout: float = 3.0,
    brokers_wanted: int = 1,
    broker_id: int | None = None,
) -> str:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        apis = api_versions(sock)
        if API_METADATA not in apis:
            raise ProbeError("broker does not advertise Metadata")
        lo, hi = apis[API_METADATA]
        candidates = [v for v in (4, 1, 2, 3, 5, 6, 7, 8) if lo <= v <= hi]
        if not candidates:
            raise ProbeError(f"no non-flexible Metadata version in {lo}..{hi}")
        brokers, controller = metadata(sock, candidates[0])
        if not brokers:
            raise ProbeError("no live brokers yet (broker still fenced?)")
        if controller < 0:
            raise ProbeError("no controller yet")
        if len(brokers) < brokers_wanted:
            raise ProbeError(f"{len(brokers)} live brokers, not {brokers_wanted} yet: {brokers}")
        if broker_id is not None and broker_id not in [node_id for node_id, _, _ in brokers]:
            raise ProbeError(f"broker {broker_id} not among the live brokers yet: {brokers}")
        return f"brokers={brokers} controller={controller}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; check /proc state where available.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--wait", type=float, default=0.0, help="keep retrying for this many seconds")
    ap.add_argument("--pid", type=int, help="give up early if this process exits")
    ap.add_argument("--brokers", type=int, default=1, help="at least this many live brokers")
    ap.add_argument("--broker-id", type=int, help="this broker among the live ones")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    deadline = time.monotonic() + args.wait
    last = "not tried"
    while True:
        try:
            info = probe_once(
                args.host, args.port, brokers_wanted=args.brokers, broker_id=args.broker_id
            )
            if args.verbose:
                print(info)
            return 0
        except (OSError, ProbeError, struct.error) as e:
            last = f"{type(e).__name__}: {e}"
        if args.pid is not None and not _alive(args.pid):
            print(f"process {args.pid} exited (last probe: {last})", file=sys.stderr)
            return 3
        if time.monotonic() >= deadline:
            if args.verbose or args.wait:
                print(f"not ready: {last}", file=sys.stderr)
            return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
