from __future__ import annotations

from typing import Any

import pytest

from sysmon_faust.core.ancestry import ancestry, decode_link, encode_link, parent_link

# Start times in the GUIDs do not matter here; the walk follows parent GUIDs.
WMI = "{aaaaaaaa-0000-0000-0000-000000000001}"
CMD = "{aaaaaaaa-0000-0000-0000-000000000002}"
MSBUILD = "{aaaaaaaa-0000-0000-0000-000000000003}"
SVCHOST = "{aaaaaaaa-0000-0000-0000-000000000004}"
SERVICES = "{aaaaaaaa-0000-0000-0000-000000000005}"


def creation(guid: str, path: str, parent: tuple[str, str] | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "process_guid": guid,
        "process_path": path,
        "process_command_line": path.lower(),
        "parent_process_guid": None,
        "parent_process_path": None,
        "parent_process_command_line": None,
    }
    if parent is not None:
        row["parent_process_guid"], row["parent_process_path"] = parent
        row["parent_process_command_line"] = parent[1].lower()
    return row


def hop(guid: str, path: str) -> dict[str, Any]:
    return {"process_guid": guid, "process_path": path, "process_command_line": path.lower()}


# svchost (never seen) → WmiPrvSE → cmd → msbuild
WMI_ROW = creation(WMI, "WmiPrvSE.exe", (SVCHOST, "svchost.exe"))
CMD_ROW = creation(CMD, "cmd.exe", (WMI, "WmiPrvSE.exe"))
MSBUILD_ROW = creation(MSBUILD, "MSBuild.exe", (CMD, "cmd.exe"))
LINKS = {row["process_guid"]: encode_link(row) for row in (WMI_ROW, CMD_ROW, MSBUILD_ROW)}


@pytest.mark.parametrize(
    ("links", "depth", "ancestors", "unknown"),
    [
        # Every hop's link known, up to the never-seen svchost: named by the
        # WmiPrvSE creation, its own parent unknown.
        (LINKS, 4, [hop(CMD, "cmd.exe"), hop(WMI, "WmiPrvSE.exe"), hop(SVCHOST, "svchost.exe")],
         SVCHOST),
        # The depth stops the walk without a lookup beyond it.
        (LINKS, 2, [hop(CMD, "cmd.exe"), hop(WMI, "WmiPrvSE.exe")], None),
        (LINKS, 1, [hop(CMD, "cmd.exe")], None),
        (LINKS, 0, [], None),
        # cmd's creation not seen (yet): the parent from the row itself, then unknown.
        ({}, 4, [hop(CMD, "cmd.exe")], CMD),
        # A process that names no parent ends the walk: complete.
        ({**LINKS, SVCHOST: encode_link(creation(SVCHOST, "svchost.exe", None))}, 4,
         [hop(CMD, "cmd.exe"), hop(WMI, "WmiPrvSE.exe"), hop(SVCHOST, "svchost.exe")], None),
    ],
)  # fmt: skip
def test_ancestry_walks_parent_links(
    links: dict[str, bytes], depth: int, ancestors: list[dict[str, Any]], unknown: str | None
) -> None:
    walk = ancestry(MSBUILD_ROW, links.get, depth)
    assert walk.ancestors == ancestors
    assert walk.unknown == unknown


def test_a_parent_named_by_its_image_alone_is_the_last_hop() -> None:
    # No ParentProcessGuid (or the zero GUID): the image still counts.
    row = creation(CMD, "cmd.exe", None)
    row["parent_process_path"] = "WmiPrvSE.exe"
    walk = ancestry(row, LINKS.get, 4)
    assert walk.ancestors == [
        {"process_guid": None, "process_path": "WmiPrvSE.exe", "process_command_line": None}
    ]
    assert walk.unknown is None


def test_a_root_process_has_no_ancestors() -> None:
    walk = ancestry(creation(SERVICES, "services.exe", None), LINKS.get, 4)
    assert walk.ancestors == [] and walk.unknown is None


def test_a_cycle_ends_the_walk() -> None:
    # Forged data: two processes naming each other as parent.
    a = creation(CMD, "cmd.exe", (WMI, "WmiPrvSE.exe"))
    b = creation(WMI, "WmiPrvSE.exe", (CMD, "cmd.exe"))
    links = {CMD: encode_link(a), WMI: encode_link(b)}
    walk = ancestry(a, links.get, 10)
    assert walk.ancestors == [hop(WMI, "WmiPrvSE.exe")]
    assert walk.unknown is None


def test_links_round_trip() -> None:
    assert decode_link(encode_link(CMD_ROW)) == parent_link(CMD_ROW) == hop(WMI, "WmiPrvSE.exe")
    root = creation(SERVICES, "services.exe", None)
    assert parent_link(root) is None
    assert encode_link(root) == b"{}"  # seen, and names no parent: not "unknown"
    assert decode_link(encode_link(root)) is None
