"""The bounded memo: None is a value, a key never put is MISSING, it stays within its bound."""

from __future__ import annotations

import pytest

from sysmon_faust.core.memo import MISSING, Memo


def test_none_is_remembered_and_a_key_never_put_is_missing() -> None:
    memo: Memo[str, bytes | None] = Memo(4)
    assert memo.get("a") is MISSING
    memo.put("a", None)
    assert memo.get("a") is None
    memo.put("a", b"x")
    assert memo.get("a") == b"x"
    memo.forget("a")
    assert memo.get("a") is MISSING
    memo.forget("never put")  # no error


def test_it_starts_over_when_full_and_an_overwrite_does_not_count() -> None:
    memo: Memo[int, int] = Memo(3)
    for key in range(3):
        memo.put(key, key)
    memo.put(2, 20)  # already there: nothing is dropped
    assert len(memo) == 3 and memo.get(0) == 0
    memo.put(3, 3)
    assert len(memo) == 1
    assert memo.get(0) is MISSING and memo.get(3) == 3
    memo.clear()
    assert len(memo) == 0


def test_a_memo_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError):
        Memo(0)
