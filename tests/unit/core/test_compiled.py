"""The compiled core: what the build compiles is what runs, and a source edited since is refused."""

from __future__ import annotations

import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from sysmon_faust.core import compiled

ROOT = Path(__file__).resolve().parents[3]
SUFFIX = EXTENSION_SUFFIXES[0]


def test_the_listed_modules_run_all_compiled_or_all_as_python_and_in_ci_compiled() -> None:
    # A build compiles every listed module or none (SYSMON_COMPILE=0): a mix
    # means a module whose build failed or went missing. CI builds as users do
    # (`make install`): the tests there run the compiled code users run.
    as_built = {
        path: str(importlib.import_module(path.removesuffix(".py").replace("/", ".")).__file__)
        for path in compiled.MODULES
    }
    interpreted = sorted(path for path, file in as_built.items() if file.endswith(".py"))
    assert interpreted in ([], sorted(as_built)), f"not compiled: {interpreted}; run `make compile`"
    # What the worker logs at start, beside its settings.
    assert compiled.running() == ("python" if interpreted else "compiled")
    if os.environ.get("CI") and os.environ.get("SYSMON_COMPILE") != "0":
        assert not interpreted, "CI runs the compiled modules; run `make compile`"


def test_every_listed_module_exists_and_none_is_listed_twice() -> None:
    assert len(set(compiled.MODULES)) == len(compiled.MODULES)
    for path in compiled.MODULES:
        assert (ROOT / path).is_file(), path


def _package(tmp_path: Path) -> Path:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("a", "sub/b", "c"):
        (package / f"{name}.py").write_text("x = 1\n")
    return package


def _built(source: Path, seconds_after: float) -> Path:
    extension = source.with_name(source.stem + SUFFIX)
    extension.write_bytes(b"")
    mtime = source.stat().st_mtime + seconds_after
    os.utime(extension, (mtime, mtime))
    return extension


def test_a_source_newer_than_its_compiled_module_is_stale(tmp_path: Path) -> None:
    package = _package(tmp_path)
    _built(package / "a.py", 10)  # compiled after its last edit
    _built(package / "sub" / "b.py", -10)  # edited after it was compiled
    # c.py has no compiled module: it runs as it is
    assert compiled.stale(package) == [package / "sub" / "b.py"]


def test_check_refuses_a_stale_module_in_a_checkout_and_says_what_to_run(tmp_path: Path) -> None:
    package = _package(tmp_path)
    _built(package / "a.py", -10)
    with pytest.raises(ImportError, match=r"pkg/a\.py changed after it was compiled.*make compile"):
        (tmp_path / "setup.py").write_text("")
        compiled.check(package)


def test_check_leaves_an_installed_package_alone(tmp_path: Path) -> None:
    # No setup.py beside the package: a wheel's files, written in no set order.
    package = _package(tmp_path)
    _built(package / "a.py", -10)
    compiled.check(package)


def test_this_checkout_has_no_stale_module() -> None:
    assert compiled.stale() == []
