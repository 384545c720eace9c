"""Dead letters: an input value the pipeline could not process, kept whole with the reason."""

from __future__ import annotations

import base64

from sysmon_faust.core.clock import utc_now_iso
from sysmon_faust.core.records import DeadLetter


def dead_letter(
    raw: bytes | None,
    error: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    received_at: str | None = None,
) -> DeadLetter:
    """Keep the original value: as text when it is UTF-8, base64 otherwise."""
    text: str | None = None
    encoded: str | None = None
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            encoded = base64.b64encode(raw).decode("ascii")
    return DeadLetter(
        error=error,
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        received_at=received_at or utc_now_iso(),
        raw=text,
        raw_base64=encoded,
    )
