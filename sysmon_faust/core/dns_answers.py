"""The names a process asked DNS for, by the addresses the answers gave: ``dst_query_name``.

Sysmon 22 (DnsQuery) logs a process's query (``QueryName``) and the answers
it got (``QueryResults``). A connect from that process to one of those
addresses went to that name — the name the process itself asked for, which
says more than Sysmon's reverse lookup (``DestinationHostname``: a CDN's
edge name, or nothing). The join keeps, per process, the most recent
answers (at most ``max_entries``) and names a connect with the newest answer
for its destination given before it and at most ``ttl_ms`` before it.

``QueryResults`` as Sysmon writes it (schema 4.90), ``;``-separated:
IPv4 answers as IPv4-mapped IPv6 (``::ffff:93.184.216.34``), IPv6 as
written, CNAMEs as ``type:  5 other.name`` (skipped: not an address), and
other record types as ``type:  N ...``. Addresses are compared in one form:
IPv4 dotted, IPv6 compressed lower case (:mod:`ipaddress`).

Pure: the entries are values; the join keeps them in its pending table
(``DNS_PREFIX`` + GUID, one value per process) with a changelog, and
``rules test`` in memory. Table-tested in tests/unit/core/test_dns_answers.py.
"""

from __future__ import annotations

import ipaddress
from typing import Final

import orjson

#: Keys of a process's answers in the pending table (apart from waiting
#: events, parked joins and alert groups).
DNS_PREFIX: Final = b"\x01dns\x00"

#: One answer: (address, query name, event time of the query in ms).
Answer = tuple[str, str, int]


def key(process_guid: str) -> bytes:
    """Where one process's answers are kept."""
    return DNS_PREFIX + process_guid.encode()


def canonical_address(text: str) -> str | None:
    """An address in the one form answers and connects are compared in; None if not one."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def addresses(query_results: str | None) -> list[str]:
    """The addresses in a ``QueryResults`` value, in order, without repeats."""
    found: list[str] = []
    for part in (query_results or "").split(";"):
        if not part.strip() or part.lstrip().startswith("type:"):
            continue  # a CNAME or another record type: no address
        address = canonical_address(part)
        if address is not None and address not in found:
            found.append(address)
    return found


def add(
    answers: list[Answer], name: str, new: list[str], at_ms: int, max_entries: int
) -> list[Answer]:
    """``answers`` (newest first) with the addresses of a query of ``name`` at ``at_ms``.

    A (name, address) answered again is kept once, at its newest time (a
    process asks for the same name over and over); one address answered for
    two names (a CDN's) is kept for each. Past ``max_entries`` the oldest go.
    """
    merged = {
        (address, answered_name): answered_at for address, answered_name, answered_at in answers
    }
    for address in new:
        merged[(address, name)] = max(at_ms, merged.get((address, name), at_ms))
    newest = sorted(merged.items(), key=lambda item: -item[1])[:max_entries]
    return [
        (address, answered_name, answered_at) for (address, answered_name), answered_at in newest
    ]


def name_for(answers: list[Answer], address: str | None, at_ms: int, ttl_ms: int) -> str | None:
    """The name of the newest answer for ``address`` given at most ``ttl_ms`` before
    ``at_ms`` (a connect's event time, ms) and not after it; None if none."""
    if address is None:
        return None
    wanted = canonical_address(address)
    for answered, name, answered_at in answers:
        if answered == wanted and answered_at <= at_ms and at_ms - answered_at <= ttl_ms:
            return name
    return None


def newest_ms(answers: list[Answer]) -> int:
    """The time of the newest answer (ms); 0 for none."""
    return max((answer[2] for answer in answers), default=0)


def encode(answers: list[Answer], until_ms: int) -> bytes:
    """The stored value: the answers and when they go (stream time, ms: the deadline
    of the last write's expiry entry, so that only that entry deletes them)."""
    return orjson.dumps({"until_ms": until_ms, "answers": answers})


def decode(value: bytes) -> tuple[list[Answer], int]:
    """(answers, until_ms); raises ValueError for a value that is not one :func:`encode` made."""
    try:
        decoded = orjson.loads(value)
        answers = [(str(a), str(n), int(t)) for a, n, t in decoded["answers"]]
        return answers, int(decoded["until_ms"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not DNS answers: {exc}") from None
