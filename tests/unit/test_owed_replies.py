"""txpool.OwedReplies: the replies to a restore are taken off the front of what PostgreSQL sends,
whether they come whole (the kept answer, compared at once) or in pieces, and an error among them
always ends the session, however often the same restore succeeded before."""

from __future__ import annotations

import pytest

from proxy.backend.txpool import RESET_SESSION, OwedReplies, RestoreFailed
from proxy.protocol import messages as m

# A CommandComplete for BEGIN, each reset statement and COMMIT (a row for the one SELECT).
TAGS = (b"BEGIN", *(b"SELECT 1" if sql.startswith(b"SELECT") else sql.split()[0] for sql in RESET_SESSION),
        b"COMMIT")
CLIENT = m.message(m.B_ROW_DESCRIPTION, b"\0\0") + m.command_complete("SELECT 0") + m.ready_for_query(m.TX_IDLE)


def _answer(failing: int | None = None, notice_at: int | None = None) -> bytes:
    out = []
    for i, tag in enumerate(TAGS):
        out.append(m.message(m.B_PARSE_COMPLETE, b"") + m.message(m.B_BIND_COMPLETE, b""))
        if i == failing:
            out.append(m.error_response("ERROR", "XX000", "failed"))
            break
        if i == notice_at:
            out.append(m.message(m.B_NOTICE_RESPONSE, b"SWARNING\0Mnote\0\0"))
        if tag == b"SELECT 1":
            out.append(m.message(m.B_DATA_ROW, b"\0\1\0\0\0\0"))
        out.append(m.message(m.B_COMMAND_COMPLETE, tag + b"\0"))
    return b"".join(out)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_the_client_bytes_after_the_answer_pass_in_any_chunking_before_and_after_it_is_kept(chunk):
    for _ in range(2):  # the second time the answer is the kept one
        owed, stream, rest = OwedReplies(RESET_SESSION), _answer() + CLIENT, b""
        for i in range(0, len(stream), chunk):
            got = owed.feed(stream[i:i + chunk]) if owed is not None else stream[i:i + chunk]
            if got is not None:
                rest += got
                owed = None
        assert rest == CLIENT


def test_an_error_fails_the_restore_after_the_same_restore_succeeded():
    assert OwedReplies(RESET_SESSION).feed(_answer() + CLIENT) == CLIENT
    with pytest.raises(RestoreFailed, match="failed"):
        OwedReplies(RESET_SESSION).feed(_answer(failing=6) + CLIENT)


def test_an_answer_with_a_notice_is_read_but_not_kept():
    assert OwedReplies(RESET_SESSION).feed(_answer(notice_at=3) + CLIENT) == CLIENT
    assert OwedReplies(RESET_SESSION).feed(_answer() + CLIENT) == CLIENT
    assert OwedReplies(RESET_SESSION).feed(_answer(notice_at=3) + CLIENT) == CLIENT
