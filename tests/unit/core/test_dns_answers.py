"""The answers of Sysmon 22, as the join keeps them and names connects with them."""

from __future__ import annotations

import pytest

from sysmon_faust.core import dns_answers
from sysmon_faust.core.dns_answers import add, addresses, name_for

# Sysmon 22 QueryResults as recorded (schema 4.90): IPv4 as IPv4-mapped IPv6,
# CNAMEs as "type:  5 name", a trailing ';'.
EDGE = (
    "type:  5 edge-microsoft-com.dual-a-0001.a-msedge.net;"
    "::ffff:13.107.21.200;::ffff:204.79.197.200;"
)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        (EDGE, ["13.107.21.200", "204.79.197.200"]),
        (
            "2a02:26F0:00FF::5c7a:a05a;::ffff:23.52.77.12;",
            ["2a02:26f0:ff::5c7a:a05a", "23.52.77.12"],
        ),
        ("type:  5 a.example;type:  5 b.example;", []),  # CNAMEs only
        ("", []),
        (None, []),
        ("-", []),  # a failed query (QueryStatus 9003) has no results
        ("::ffff:10.0.0.1;::ffff:10.0.0.1;", ["10.0.0.1"]),
        ("not an address;::ffff:10.0.0.2", ["10.0.0.2"]),
    ],
)
def test_addresses(results: str | None, expected: list[str]) -> None:
    assert addresses(results) == expected


def test_the_newest_answer_before_the_connect_within_the_ttl_names_it() -> None:
    answers = add([], "a.example", ["10.0.0.1"], 1_000, 10)
    answers = add(answers, "b.example", ["10.0.0.1"], 5_000, 10)  # a CDN address, two names
    assert name_for(answers, "10.0.0.1", 6_000, 60_000) == "b.example"
    assert name_for(answers, "10.0.0.1", 2_000, 60_000) == "a.example"  # b came after it
    assert name_for(answers, "10.0.0.1", 500, 60_000) is None  # before any answer
    assert name_for(answers, "10.0.0.1", 61_001, 60_000) == "b.example"
    assert name_for(answers, "10.0.0.1", 65_001, 60_000) is None  # stale
    assert name_for(answers, "::ffff:10.0.0.1", 6_000, 60_000) == "b.example"
    assert name_for(answers, "10.0.0.2", 6_000, 60_000) is None
    assert name_for(answers, None, 6_000, 60_000) is None


def test_a_name_asked_again_is_kept_once_and_the_oldest_go_past_the_bound() -> None:
    answers = add([], "a.example", ["10.0.0.1"], 1_000, 3)
    answers = add(answers, "a.example", ["10.0.0.1"], 2_000, 3)
    assert answers == [("10.0.0.1", "a.example", 2_000)]
    answers = add(answers, "b.example", ["10.0.0.2", "10.0.0.3"], 3_000, 3)
    answers = add(answers, "c.example", ["10.0.0.4"], 4_000, 3)
    assert [a[0] for a in answers] == ["10.0.0.4", "10.0.0.2", "10.0.0.3"]


def test_encode_decode() -> None:
    answers = add([], "a.example", ["10.0.0.1", "2a02::1"], 1_000, 10)
    assert dns_answers.decode(dns_answers.encode(answers, 99)) == (answers, 99)
    with pytest.raises(ValueError):
        dns_answers.decode(b"[1, 2]")
