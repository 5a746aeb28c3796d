"""The per-poll step every consumer shares: decode, apply, refuse; one bad record costs that record alone."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bus.intake import Refusals, take
from fleet import decode
from fleet.decode import INTERNAL_ERROR, Refusal
from fleet.schema import Fix, encode_fix

NOW = 1_800_000_000.0


@dataclass
class FakeRecord:
    value: bytes | None
    offset: int
    key: bytes | None = None
    topic: str = "driver-location"
    partition: int = 0
    timestamp: int = 0
    headers: list = field(default_factory=list)


def fix_record(driver_id: str, offset: int) -> FakeRecord:
    return FakeRecord(encode_fix(Fix(driver_id, 40.0, -73.0, NOW)), offset, driver_id.encode())


def test_valid_records_are_applied_as_one_batch_and_invalid_ones_refused_with_their_reason():
    batches, refused = [], []
    records = [fix_record("a", 0), FakeRecord(b"not json", 1), fix_record("b", 2)]
    applied = take(records, decode.FIXES, NOW, batches.append, lambda r, why: refused.append((r.offset, why.reason)))
    assert applied == 2
    assert [[fix.driver_id for fix, _ in batch] for batch in batches] == [["a", "b"]]
    assert refused == [(1, "not_json")]


def test_a_record_whose_apply_raises_is_refused_as_internal_error_and_the_others_are_applied():
    held: dict[str, int] = {}

    def apply(items):  # idempotent, like the real appliers: a record applied twice changes nothing
        for fix, record in items:
            if fix.driver_id == "boom":
                raise KeyError("a bug that only this record triggers")
            held[fix.driver_id] = record.offset

    refused = []
    records = [fix_record("a", 0), fix_record("boom", 1), fix_record("c", 2)]
    applied = take(records, decode.FIXES, NOW, apply, lambda r, why: refused.append((r.offset, why)))
    assert applied == 2
    assert held == {"a": 0, "c": 2}
    assert len(refused) == 1
    offset, refusal = refused[0]
    assert (offset, refusal.reason, refusal.exception) == (1, INTERNAL_ERROR, "builtins.KeyError")


def test_refusals_are_counted_and_logged_once_per_reason_per_interval_with_a_count_of_the_rest(caplog):
    clock = [0.0]
    refusals = Refusals("test consumer", interval_s=60.0, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="bus.intake"):
        for offset in range(1000):
            refusals.note(FakeRecord(b"", offset, topic="t"), Refusal("not_json", f"record {offset}"))
        refusals.note(FakeRecord(b"", 1000, topic="t"), Refusal("bad_latitude", "200"))
        refusals.flush()  # the interval is not over: nothing more yet
        clock[0] = 61.0
        refusals.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "t/0/0: not_json (record 0)" in lines[0]
    assert "bad_latitude" in lines[1]
    assert "refused 999 more records of t as not_json in the last 60 s (the latest: record 999)" in lines[2]
    assert refusals.counts == {("t", "not_json"): 1000, ("t", "bad_latitude"): 1}
    assert refusals.total == 1001
