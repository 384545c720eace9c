"""A Winlogbeat or Elastic Agent record's ``winlog`` channel, provider and event id, read
without decoding the record.

Most records of a Winlogbeat topic are dropped at the intake: other channels
(Security, PowerShell, System) and the Sysmon event ids no rule and no
enrichment wants — 94 % of ``make bench``'s mix when only Sysmon 1, 3 and 5
are enriched. Decoding such a record with orjson, only to read three of its
fields, builds and frees a Python object for every key and value of ~1.1 KiB
of JSON (2.4 µs of the 3.6 µs :func:`~sysmon_faust.core.normalize.normalize`
took per record of that mix). simdjson (pysimdjson) validates the whole
record and indexes it in C without building Python objects; reading the three
fields from its index (1.23 µs) took normalize from 3.57 to 2.05-2.14 µs per
record (``/tmp`` micro-benchmark, 100,000 records of the mix, compiled,
2026-12-05), and a worker enriching only 1, 3, 5 from a median of 73,591 to
85,054 events/s (seven pairs alternating, 600,000 events; docs/benchmark.md,
"How it got there").

The header is what orjson's decoding would give, or None — decode the
record — where the two parsers could disagree: a record that does not start
with ``{`` (a UTF-8 BOM, which simdjson skips and orjson refuses; leading
white space), one larger than :data:`MAX_BYTES`, and whatever simdjson
refuses (a lone surrogate escape, which
:func:`~sysmon_faust.core.normalize.parse_json_object` reads by rules of its
own; an integer beyond 64 bits, which orjson reads as a float; an object
nested 1,024 deep, which orjson takes). simdjson nests no deeper than orjson,
and reads escapes in keys and strings as orjson does
(``tests/unit/core/test_winlog_header.py`` holds both to it).

One difference is kept, for records no shipper writes: a record that repeats
a key (RFC 8259 §4 leaves duplicates to the parser) is read by simdjson's
first ``winlog`` and first ``channel``, ``provider_name`` and ``event_id``,
where orjson keeps the last. Telling them apart would take a scan of the
record per key, the cost of decoding it (0.5 µs each against orjson's 2.4
for the whole record); such a record can only come from whoever writes the
topic, who could as well leave the event out.
"""

from __future__ import annotations

from typing import Any, Final

import simdjson

#: Records larger than this (bytes) are decoded: simdjson's parser keeps the
#: largest buffer it has needed, and a Winlogbeat record is ~1-4 KiB.
MAX_BYTES: Final = 64 * 1024

#: What the header's values are checked against (bound once: a module attribute is
#: looked up on every use).
_OBJECT: Final[Any] = simdjson.Object
_ARRAY: Final[Any] = simdjson.Array

#: The one parser, reused for every record: it keeps its buffers. pysimdjson
#: refuses to parse again while a document of the last parse is still
#: referenced (a thread of its own, or a traceback): such a record is decoded.
_PARSER: Final[Any] = simdjson.Parser(max_capacity=MAX_BYTES)


def winlog_header(raw: bytes) -> tuple[Any, Any, Any] | None:
    """``(winlog.channel, winlog.provider_name, winlog.event_id)`` of a record of the
    Winlogbeat / Elastic Agent shape (:data:`sysmon_faust.core.shapes.WINLOGBEAT_7`), each
    as orjson would decode it (None when absent); None when the record is not of that shape
    or might not be read alike by both parsers (see the module docstring).

    ``raw``: the record's bytes. Never raises.
    """
    if raw[:1] != b"{" or len(raw) > MAX_BYTES:
        return None
    try:
        doc = _PARSER.parse(raw)
        if type(doc) is not _OBJECT:
            return None
        winlog = doc.get("winlog")
        if type(winlog) is not _OBJECT:
            return None
        channel = winlog.get("channel")
        provider = winlog.get("provider_name")
        event_id = winlog.get("event_id")
    except Exception:
        return None  # what simdjson refuses, orjson judges
    # Objects and arrays are simdjson's, tied to its buffer: no decision is
    # made on them (normalize compares strings and numbers only).
    for value in (channel, provider, event_id):
        if type(value) is _OBJECT or type(value) is _ARRAY:
            return None
    return channel, provider, event_id
