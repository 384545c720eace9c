"""The worker that ``faust -A sysmon_faust worker`` runs: the app with every part registered.

Faust's decorators register an agent, a timer, a service or a page on the
app when the module that holds it is imported. The app module
(:mod:`sysmon_faust.stream.topology`) imports none of them — each imports
it — so this module, which imports them all, is the one place the worker
is put together, and no module imports one that imports it back.
"""

from __future__ import annotations

import gc

from sysmon_faust.http import observability, views
from sysmon_faust.stream import agents, intake, purge, ticks
from sysmon_faust.stream.topology import app

#: What registers on import (kept referenced: the imports are their point).
PARTS = (agents, intake, purge, ticks, observability, views)

__all__ = ["PARTS", "app"]

# The join makes and drops short-lived dicts by the million, almost never in
# cycles. CPython's default thresholds (700, 10, 10) ran ~2,600 collections
# per 300,000 events, 1.8 s of CPU: 9 % of the worker with every Sysmon type
# enriched (gc.callbacks timing over make bench's mix; 70.2 -> 64.1 µs per
# event with these). Cycles are still collected, less often.
gc.set_threshold(50_000, 20, 100)
