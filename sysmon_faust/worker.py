"""The worker that ``faust -A sysmon_faust worker`` runs: the app with every part registered.

Faust's decorators register an agent, a timer, a service or a page on the
app when the module that holds it is imported. The app module
(:mod:`sysmon_faust.stream.topology`) imports none of them — each imports
it — so this module, which imports them all, is the one place the worker
is put together, and no module imports one that imports it back.
"""

from __future__ import annotations

from sysmon_faust.http import observability, views
from sysmon_faust.stream import agents, intake, purge, ticks
from sysmon_faust.stream.topology import app

#: What registers on import (kept referenced: the imports are their point).
PARTS = (agents, intake, purge, ticks, observability, views)

__all__ = ["PARTS", "app"]
