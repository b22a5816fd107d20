"""protocol/pipeline.py: which client message each backend reply answers, from tables of
message types (what PostgreSQL 15 does with each sequence was checked against a server by the
differential test, tests/integration/test_relay_differential.py)."""

from __future__ import annotations

import pytest

from proxy.protocol.pipeline import Entry, Pipeline

COPY_READER_PROTOCOL = {"S": "ERROR", "V": "ERROR", "C": "08P01", "R": "CopyGetData",
                        "M": "unexpected message type 0x51 during COPY from stdin"}
COPY_FAILED = {"S": "ERROR", "V": "ERROR", "C": "57014", "R": "CopyGetData", "M": "COPY from stdin failed: x"}
FATAL = {"S": "FATAL", "V": "FATAL", "C": "57P01", "M": "terminating connection due to administrator command"}
BAD_ROW = {"S": "ERROR", "V": "ERROR", "C": "22P02", "R": "pg_strtoint32_safe", "M": "invalid input syntax"}
ERROR = {"S": "ERROR", "V": "ERROR", "C": "42601", "M": "syntax error"}


def run(script: list[str]) -> tuple[list[str], Pipeline]:
    """script: '>X' the client sends X (d: CopyData), '<X' the backend replies X ('<E' an
    error; '<E:copy' the COPY reader's 08P01, '<E:fail' CopyFail's, '<E:row' a bad row).
    Returns the events: 'answered N' / 'discarded N' (N: the position of the client message)."""
    events: list[str] = []
    pipeline = Pipeline(lambda e: events.append(f"answered {e.data}"), lambda e: events.append(f"discarded {e.data}"))
    sent = 0
    for step in script:
        direction, kind = step[0], step[1:]
        if direction == ">":
            if kind == "d":
                pipeline.copy_data()
            else:
                pipeline.sent(Entry(ord(kind), sent))
            sent += 1
        else:
            error = {"E": ERROR, "E:copy": COPY_READER_PROTOCOL, "E:fail": COPY_FAILED, "E:row": BAD_ROW,
                     "E:fatal": FATAL}.get(kind)
            pipeline.received(ord(kind[0]), error)
    return events, pipeline


@pytest.mark.parametrize("script, events, busy", [
    # a simple query, and a pipeline
    (">Q <T <D <C <Z", ["answered 0"], False),
    (">P >B >D >E >S <1 <2 <T <D <C <Z", [f"answered {n}" for n in range(5)], False),
    (">Q", [], True),
    # an extended-protocol error skips to the next Sync: the Query in between is never answered
    (">D >Q >S <E <Z", ["answered 0", "discarded 1", "answered 2"], False),
    (">P >B >E >Q <E", ["answered 0", "discarded 1", "discarded 2", "discarded 3"], False),
    (">P >Q <E >S >Q <Z <C <Z", ["answered 0", "discarded 1", "answered 2", "answered 3"], False),
    # an error inside a Query does not skip anything after it
    (">Q >Q <E <Z <C <Z", ["answered 0", "answered 1"], False),
    # a Sync whose commit fails is answered with the error and its ReadyForQuery
    (">S <E <Z", ["answered 0"], False),
    # COPY FROM STDIN in a Query: Syncs inside are read as nothing; CopyDone ends it
    (">Q <G >d >S >d >c >S <C <Z <Z", ["discarded 2", "answered 0", "answered 5"], False),
    # ... a Query sent during the COPY ends it with an error and is used up
    (">Q <G >d >Q >S <E:copy <Z <Z", ["discarded 2", "answered 0", "answered 3"], False),
    # ... CopyFail
    (">Q <G >d >f >S <E:fail <Z <Z", ["answered 0", "answered 3"], False),
    # ... a bad row: a Query after it is not used up by the COPY, it runs
    (">Q <G >d >Q <E:row <Z <C <Z", ["answered 0", "answered 2"], False),
    # COPY run by Execute: the Sync sent with it (before any data) is read as nothing
    (">P >B >E >S <1 <2 <G >d >c >S <C <Z", ["answered 0", "answered 1", "discarded 3", "answered 2", "answered 6"],
     False),
    # ... and a failure in it skips to the next Sync
    (">P >B >E >S <1 <2 <G >d >c >Q >S <E:row <Z",
     ["answered 0", "answered 1", "discarded 3", "answered 2", "discarded 6", "answered 7"], False),
    # CopyData, CopyDone and CopyFail outside a COPY are ignored
    (">d >c >f >Q <C <Z", ["answered 3"], False),
    # a portal run a row at a time, and a COPY out
    (">B >E >E >S <2 <D <s <D <C <Z", [f"answered {n}" for n in range(4)], False),
    (">Q <H <d <d <c <C <Z", ["answered 0"], False),
    # a FATAL error answers nothing (the session ends)
    (">Q <E:fatal", [], True),
])
def test_replies_are_matched_to_what_postgresql_read(script, events, busy):
    got, pipeline = run(script.split())
    assert got == events
    assert pipeline.busy is busy
    assert not pipeline.lost


def test_a_sync_inside_a_failed_copys_data_may_be_answered_after_all():
    # PostgreSQL failed on the row before the Sync, so it answers the Sync: a ReadyForQuery
    # that answers nothing queued is taken for it.
    events, pipeline = run(">Q <G >d >S >d >c >Q <E:row <Z <Z <C <Z".split())
    assert events == ["discarded 2", "answered 0", "answered 5"]
    assert not pipeline.busy and not pipeline.lost


def test_run_by_execute_the_same_case_stops_tracking_but_never_stays_busy():
    events, pipeline = run(">P >B >E >S <1 <2 <G >d >S >d >c >S <E:row".split())
    assert pipeline.lost
    assert pipeline.busy  # replies may still come
    pipeline.received(ord("Z"))
    assert not pipeline.busy
