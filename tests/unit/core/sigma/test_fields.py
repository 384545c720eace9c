"""An event as Sigma sees it: its own fields, and only the context its kind never carries."""

from __future__ import annotations

from sysmon_faust.core.sigma import fields

PROCESS = {
    "process_guid": "{11111111-2222-3333-4444-555555555555}",
    "process_path": "C:\\Windows\\System32\\cmd.exe",
    "process_command_line": "cmd /c whoami",
    "parent_process_path": "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
    "user_name": "CORP\\alice",
    "event_data": {"Hashes": "MD5=AAAA", "OriginalFileName": "Cmd.Exe", "IntegrityLevel": "High"},
}
ANCESTRY = [{"process_path": "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
             "process_command_line": "wmiprvse.exe", "process_guid": "{p}"}]  # fmt: skip


def test_a_connection_gets_what_sysmon_3_lacks() -> None:
    view = fields.with_context({"EventID": "3", "Image": "C:\\x.exe"}, 3, PROCESS, ANCESTRY)
    assert view["CommandLine"] == "cmd /c whoami"
    assert view["ParentImage"].endswith("WmiPrvSE.exe")
    assert view["Hashes"] == "MD5=AAAA" and view["IntegrityLevel"] == "High"
    assert view["AncestorImage"] == ["C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"]
    assert view["Image"] == "C:\\x.exe"  # its own, even if the row says otherwise


def test_an_image_load_keeps_its_own_pe_fields_even_when_missing() -> None:
    # Sysmon 7's Hashes and OriginalFileName are the DLL's: never the process's,
    # also when an older Sysmon left them out.
    view = fields.with_context({"EventID": "7", "ImageLoaded": "C:\\a.dll"}, 7, PROCESS, ANCESTRY)
    assert "Hashes" not in view and "OriginalFileName" not in view
    assert view["CommandLine"] == "cmd /c whoami"


def test_a_field_the_kind_carries_is_not_filled_from_the_process() -> None:
    view = fields.with_context({"EventID": "11", "TargetFilename": "a"}, 11, PROCESS, [])
    assert "User" not in view  # Sysmon 11 has User (schema 4.50+): its own or none
    assert view["ParentImage"].endswith("WmiPrvSE.exe")


def test_events_without_a_process_get_no_context() -> None:
    for event_id in (4, 6, 16, 19, 255):
        view = fields.with_context({"EventID": str(event_id)}, event_id, PROCESS, ANCESTRY)
        assert view == {"EventID": str(event_id)}
        assert not fields.context_only(event_id)


def test_only_the_context_the_rules_test_is_added() -> None:
    # The rules of Sysmon 3 test ParentImage and AncestorCommandLine only:
    # the view carries those two, not the command lines they never read.
    tested = {"EventID", "Image", "ParentImage", "AncestorCommandLine"}
    view = fields.with_context({"EventID": "3", "Image": "C:\\x.exe"}, 3, PROCESS, ANCESTRY, tested)
    assert view == {
        "EventID": "3",
        "Image": "C:\\x.exe",
        "ParentImage": "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
        "AncestorCommandLine": ["wmiprvse.exe"],
    }
