"""The package's build: pyproject.toml declares it; this adds the modules mypyc compiles.

Which modules, and why: ``sysmon_faust/core/compiled.py``. ``SYSMON_COMPILE=0``
builds the package as plain Python (no C compiler needed).
"""

import os
import runpy

from setuptools import setup

MODULES = runpy.run_path("sysmon_faust/core/compiled.py")["MODULES"]

if os.environ.get("SYSMON_COMPILE", "1") == "0":
    setup()
else:
    from mypyc.build import mypycify

    setup(
        ext_modules=mypycify(
            # The build's own environment holds mypy, not the package's
            # dependencies: their types are Any there, so an ignore that
            # `make lint` needs is unused here.
            ["--no-warn-unused-ignores", *MODULES],
            opt_level="3",
            group_name="sysmon_faust_core",
            # One C file per module, so that build_ext below can run one gcc
            # per core (one file for the whole group is one long gcc run).
            multi_file=True,
        ),
        options={"build_ext": {"parallel": os.cpu_count() or 1}},
    )
