"""Recordings as people have them → the records they hold, in order, one value each.

What ``replay`` sends and ``rules test`` reads; pure file reading, no Kafka.
A file's kind is its name's ending:

=================================  ==================================================
kind                               records
=================================  ==================================================
``.json`` ``.jsonl`` ``.ndjson``   JSON lines; or one JSON array, element by element;
                                   or JSON objects one after the other, pretty-printed
                                   or not (SigmaHQ's regression files)
``.gz`` (``.jsonl.gz``, …)         the same, gunzipped
``.evtx``                          each record of the Windows event log, as the
                                   ``evtx`` package's JSON (``{"Event": …}``)
``.tar.gz`` ``.tgz`` ``.tar.bz2``  every ``.json``/``.jsonl``/``.ndjson``/``.evtx``
``.tbz2`` ``.tar.xz`` ``.tar``     member, in member order (OTRF publishes its
``.zip``                           recordings so)
=================================  ==================================================

Anything else, and a file that cannot be read as its kind, raises
:class:`RecordingError` naming the file and why, before a record of it is
read: a run never looks normal over data it did not read. What is read
but worth a word (bytes after a gzip stream, archive members of other
kinds) goes to ``on_note``, once per file.

A record is the line (line end and a leading UTF-8 BOM removed) or the
compact JSON of one element/object; lines are not checked: a line that is
not JSON is a record all the same, for the pipeline to dead-letter.
"""

from __future__ import annotations

import io
import json
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Final

import evtx
import orjson

UTF8_BOM: Final = b"\xef\xbb\xbf"
GZIP_MAGIC: Final = b"\x1f\x8b"

JSON_SUFFIXES: Final = (".json", ".jsonl", ".ndjson")
EVTX_SUFFIX: Final = ".evtx"
TAR_SUFFIXES: Final = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".tar")
ZIP_SUFFIX: Final = ".zip"
#: The kinds a user may name, for the error that names what is read.
KINDS: Final = (
    ".json, .jsonl, .ndjson, .gz (gzipped JSON), .evtx, "
    ".tar.gz, .tgz, .tar.bz2, .tbz2, .tar.xz, .tar, .zip"
)
#: Archive members read (others are skipped, with a note).
MEMBER_SUFFIXES: Final = (*JSON_SUFFIXES, EVTX_SUFFIX)

OnNote = Callable[[str], None]


class RecordingError(Exception):
    """A file that is not a recording we read, or cannot be read as its kind; names the file."""


def kind(path: Path) -> str:
    """The kind of ``path`` by its name: ``json``, ``json.gz``, ``evtx``, ``tar`` or ``zip``.

    Raises :class:`RecordingError` for any other name.
    """
    name = path.name.lower()
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(ZIP_SUFFIX):
        return "zip"
    if name.endswith(EVTX_SUFFIX):
        return "evtx"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    if name.endswith(".gz"):
        return "json.gz"
    raise RecordingError(
        f"{path}: not a recording this reads (by its name); it reads {KINDS}. "
        "Rename a JSON-lines file to .jsonl."
    )


def read_records(path: Path, on_note: OnNote | None = None) -> Iterator[bytes]:
    """The records of one recording, in file order (see the module docstring).

    Raises :class:`RecordingError` naming the file when it is of no kind
    read here or cannot be read as its kind.
    """
    note = on_note or (lambda _: None)
    file_kind = kind(path)
    try:
        if file_kind == "evtx":
            with path.open("rb") as handle:
                yield from _evtx_records(handle, str(path))
        elif file_kind == "json":
            with path.open("rb") as handle:
                yield from _json_records(handle, str(path))
        elif file_kind == "json.gz":
            with path.open("rb") as raw:
                handle = io.BufferedReader(_Gunzipped(raw, str(path), note))
                yield from _json_records(handle, str(path))
        elif file_kind == "tar":
            yield from _tar_records(path, note)
        else:
            yield from _zip_records(path, note)
    except RecordingError:
        raise
    except (OSError, EOFError, ValueError, RuntimeError, tarfile.TarError, zipfile.BadZipFile,
            lzma.LZMAError, zlib.error) as exc:  # fmt: skip
        raise RecordingError(f"cannot read {path} as {file_kind}: {exc}") from exc


def count_records(paths: list[Path], on_note: OnNote | None = None) -> int:
    """How many records ``paths`` hold (reads them all: every error is raised before a send)."""
    return sum(sum(1 for _ in read_records(path, on_note)) for path in paths)


# --- JSON ---------------------------------------------------------------------------


def _json_records(reader: IO[bytes], name: str) -> Iterator[bytes]:
    """The records of JSON text; ``reader`` can ``peek`` (a buffered file)."""
    head = reader.peek(64)[:64].removeprefix(UTF8_BOM).lstrip()  # type: ignore[attr-defined]
    if head.startswith(b"["):
        yield from _json_array(reader.read(), name)
        return
    first = True
    for line in reader:
        if first:
            line = line.removeprefix(UTF8_BOM)
            first = False
            if line.strip() == b"{":
                # A first line that is a lone "{": indented objects (json.dump,
                # evtx_dump, SigmaHQ). Only that: a first line that is broken
                # JSON is a record like any other, for the pipeline to dead-letter.
                yield from _json_objects(line + reader.read(), name)
                return
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def _json_objects(data: bytes, name: str) -> Iterator[bytes]:
    """JSON values one after the other (whitespace between), each sent compact."""
    text = data.removeprefix(UTF8_BOM).decode("utf-8", "surrogatepass")
    decoder = json.JSONDecoder()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError as exc:
            raise RecordingError(f"{name}: not JSON at character {at}: {exc}") from exc
        # ASCII with escapes: an unpaired surrogate stays an escape (then read
        # as U+FFFD), never bytes that are not UTF-8.
        yield json.dumps(value, separators=(",", ":")).encode()


def _json_array(data: bytes, name: str) -> Iterator[bytes]:
    try:
        items = orjson.loads(data.removeprefix(UTF8_BOM))
    except orjson.JSONDecodeError as exc:
        raise RecordingError(f"{name} starts like a JSON array but is not one: {exc}") from exc
    for item in items:
        yield orjson.dumps(item)


# --- .evtx --------------------------------------------------------------------------


def _evtx_records(handle: IO[bytes], name: str) -> Iterator[bytes]:
    """Each record of a Windows event log file, as the JSON of its event (``evtx`` package)."""
    try:
        parser = evtx.PyEvtxParser(handle)
        for record in parser.records_json():
            if record is not None:  # the package's type: a record it could not read
                yield orjson.dumps(orjson.loads(record["data"]))
    except (OSError, RuntimeError, ValueError) as exc:
        raise RecordingError(f"cannot read {name} as a Windows event log (.evtx): {exc}") from exc


# --- gzip ---------------------------------------------------------------------------


class _Gunzipped(io.RawIOBase):
    """The gzip members of a stream, decompressed; bytes after the last member are ignored.

    Python's gzip module refuses a file with bytes after its last member
    ("Not a gzipped file"), and OTRF's Security-Datasets archives carry such
    stray bytes: here they are left unread and said (``on_note``), once.
    """

    _CHUNK: Final = 1024 * 1024

    def __init__(self, raw: IO[bytes], name: str, on_note: OnNote) -> None:
        super().__init__()
        self._raw = raw
        self._name = name
        self._on_note = on_note
        self._inflate = zlib.decompressobj(wbits=31)
        self._ready = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._ready and not self._done:
            self._fill()
        size = min(len(buffer), len(self._ready))
        buffer[:size] = self._ready[:size]
        self._ready = self._ready[size:]
        return size

    def _fill(self) -> None:
        if self._inflate.eof:
            rest = self._inflate.unused_data
            if not rest:
                rest = self._raw.read(self._CHUNK)
            if rest[:2] == GZIP_MAGIC:  # a further member (concatenated gzip)
                self._inflate = zlib.decompressobj(wbits=31)
                self._ready = self._inflate.decompress(rest)
                return
            self._done = True
            if rest.strip(b"\x00"):
                ignored = len(rest) + len(self._raw.read())
                self._on_note(f"{self._name}: {ignored:,} bytes after the gzip stream ignored")
            return
        chunk = self._raw.read(self._CHUNK)
        if not chunk:
            raise EOFError(f"{self._name}: the gzip stream ends early (the file is cut short)")
        self._ready = self._inflate.decompress(chunk)


# --- archives -----------------------------------------------------------------------


def _member_reader(name: str, data: IO[bytes], label: str) -> Iterator[bytes]:
    """A member's records; ``data`` is tarfile's or zipfile's member file (both can peek)."""
    if name.lower().endswith(EVTX_SUFFIX):
        # The evtx parser seeks: the member is read into memory (a Sysmon
        # log is 64 MiB by default).
        return _evtx_records(io.BytesIO(data.read()), label)
    return _json_records(data, label)


def _open_tar(raw: IO[bytes], path: Path, note: OnNote) -> tarfile.TarFile:
    """Read as a stream, member after member (no seeking back); gzip by :class:`_Gunzipped`."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return tarfile.open(fileobj=io.BufferedReader(_Gunzipped(raw, str(path), note)), mode="r|")
    if name.endswith((".tar.bz2", ".tbz2")):
        return tarfile.open(fileobj=raw, mode="r|bz2")
    if name.endswith(".tar.xz"):
        return tarfile.open(fileobj=raw, mode="r|xz")
    return tarfile.open(fileobj=raw, mode="r|")


def _tar_records(path: Path, note: OnNote) -> Iterator[bytes]:
    with path.open("rb") as raw:
        skipped = []
        with _open_tar(raw, path, note) as archive:
            for member in archive:
                if not member.isfile():
                    continue
                if not member.name.lower().endswith(MEMBER_SUFFIXES):
                    skipped.append(member.name)
                    continue
                data = archive.extractfile(member)
                if data is not None:
                    yield from _member_reader(member.name, data, f"{path}:{member.name}")
            # tarfile stops at the archive's end marker: what follows it (the
            # compressed stream's end, bytes after that) is read for its note.
            while archive.fileobj is not None and archive.fileobj.read(1024 * 1024):
                pass
        _note_skipped(path, skipped, note)


def _zip_records(path: Path, note: OnNote) -> Iterator[bytes]:
    skipped = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if not info.filename.lower().endswith(MEMBER_SUFFIXES):
                skipped.append(info.filename)
                continue
            with archive.open(info) as data:
                yield from _member_reader(info.filename, data, f"{path}:{info.filename}")
    _note_skipped(path, skipped, note)


def _note_skipped(path: Path, skipped: list[str], note: OnNote) -> None:
    if skipped:
        shown = ", ".join(skipped[:5]) + (", …" if len(skipped) > 5 else "")
        note(f"{path}: {len(skipped)} member(s) of no recording kind skipped ({shown})")
