"""The pure core: what a Sysmon event is, the join, ancestry and rules — no Kafka, no Faust.

Nothing here imports faust, aiokafka or aiohttp, nor anything of
:mod:`sysmon_faust.stream`, :mod:`sysmon_faust.http` or :mod:`sysmon_faust.cli.errors`
(``make lint`` checks it with import-linter). The worker and ``rules test``
run the same code from here; its unit tests need no broker.
"""

from sysmon_faust.core import compiled

# A compiled module older than its source would run the old code (compiled.py).
compiled.check()
