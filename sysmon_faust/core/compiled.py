"""Which pure modules are compiled to C by mypyc, and the check that none is older than its source.

Every event a worker reads is normalized, re-keyed, joined, matched against
the rules and summarized by Python code of this package, one call after
another: the profile of a worker is flat (no function above ~5 % of its
samples, docs/benchmark.md), so no one change to that code moves it much.
Compiled by mypyc (mypy's compiler: the same typed source, as C calls instead
of bytecode), the modules listed here took a worker enriching every Sysmon
type from 148.0 / 118.4 / 103.7 to 121.1 / 108.3 / 72.7 µs of CPU per input
event, and one enriching only Sysmon 1, 3 and 5 from 36.3 / 39.8 / 36.2 to
32.7 / 38.3 / 28.3 (three rounds alternating, 200,000 events of ``make
bench``'s mix, 2026-12-03; docs/benchmark.md, "How it got there").

``setup.py`` compiles :data:`MODULES` when the package is built
(``make install``, ``pip install``), unless ``SYSMON_COMPILE=0``; without a
compiler the same modules run as Python, with the same results (the unit
tests pass either way). What stays Python: everything that touches Faust,
Kafka or aiohttp, and the core modules that are not on a worker's per-event
path or that mypyc does not take (an in-memory store the tests patch:
``join.store``).

In a source checkout an extension module shadows the ``.py`` beside it, so a
module edited after it was compiled would run as it was before the edit:
:func:`check` (run when :mod:`sysmon_faust.core` is imported) refuses that
with an :class:`ImportError` that says what to run.
"""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Final

#: The modules compiled, by path from the repository root (``setup.py`` reads this list).
MODULES: Final = (
    "sysmon_faust/core/normalize.py",
    "sysmon_faust/core/winlog_header.py",
    "sysmon_faust/core/intake_read.py",
    "sysmon_faust/core/shapes.py",
    "sysmon_faust/core/rekey.py",
    "sysmon_faust/core/alignment.py",
    "sysmon_faust/core/activity.py",
    "sysmon_faust/core/ancestry.py",
    "sysmon_faust/core/dns_answers.py",
    "sysmon_faust/core/guid_time.py",
    "sysmon_faust/core/memo.py",
    "sysmon_faust/core/alert_groups.py",
    "sysmon_faust/core/join/engine.py",
    "sysmon_faust/core/join/state.py",
    "sysmon_faust/core/join/row_count.py",
    "sysmon_faust/core/join/semantics.py",
    "sysmon_faust/core/join/grace.py",
    "sysmon_faust/core/join/expiry.py",
    "sysmon_faust/core/join/parking.py",
    "sysmon_faust/core/sigma/fields.py",
    "sysmon_faust/core/sigma/index.py",
    "sysmon_faust/core/sigma/values.py",
    "sysmon_faust/core/sigma/conditions.py",
    "sysmon_faust/core/sigma/ruleset.py",
    "sysmon_faust/core/sigma/alerts.py",
    "sysmon_faust/core/sigma/logsource.py",
)

#: The package's folder; its parent is the repository root in a source checkout.
PACKAGE: Final = Path(__file__).resolve().parents[1]


def running() -> str:
    """How :data:`MODULES` run in this process: ``"compiled"`` (all), ``"python"`` (none: a
    build with ``SYSMON_COMPILE=0``, or no compiler), or ``"mixed"`` (a build gone wrong).

    The worker logs it at start, beside its settings: a figure of ``make bench`` or
    of production is one of the two, and says which.
    """
    files = [
        str(importlib.import_module(path.removesuffix(".py").replace("/", ".")).__file__)
        for path in MODULES
    ]
    compiled = sum(not file.endswith(".py") for file in files)
    return "compiled" if compiled == len(files) else "python" if not compiled else "mixed"


def stale(package: Path = PACKAGE) -> list[Path]:
    """Sources under ``package`` changed after their compiled module was built (mtime, s).

    Every extension module beside a ``.py`` counts, listed in :data:`MODULES`
    or not (one dropped from the list still shadows its source).
    """
    found = []
    for suffix in {suffix.rsplit(".", 1)[-1] for suffix in EXTENSION_SUFFIXES}:
        for extension in package.rglob(f"*.{suffix}"):
            source = extension.with_name(extension.name.split(".", 1)[0] + ".py")
            if source.is_file() and source.stat().st_mtime > extension.stat().st_mtime:
                found.append(source)
    return sorted(found)


def check(package: Path = PACKAGE) -> None:
    """Raise ImportError when a compiled module is older than its source, in a source checkout.

    Only there: an installed wheel writes its sources and extensions in one go,
    in no set order, and nobody edits them.
    """
    if not (package.parent / "setup.py").is_file():
        return
    changed = stale(package)
    if changed:
        names = ", ".join(str(source.relative_to(package.parent)) for source in changed)
        raise ImportError(
            f"{names} changed after it was compiled, and the compiled module would run instead: "
            "run `make compile` (or `SYSMON_COMPILE=0 make compile` to run the sources as they are)"
        )
