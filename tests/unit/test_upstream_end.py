"""How the app-server connection ended (proxy/upstream_end.py): status, stderr line, close code and kind."""

from __future__ import annotations

import pytest

from proxy import upstream_end
from proxy.errors import ExitStatus
from proxy.messages import TooBig

WHERE = "/run/codex.sock"


def test_lost_names_a_message_cut_short_and_the_requests_left_unanswered() -> None:
    end = upstream_end.lost(WHERE, partial=True, outstanding=2)
    assert end == upstream_end.UpstreamEnd(
        ExitStatus.SESSION_FAILED,
        f"lost the connection to the app-server at {WHERE}: it closed without a close frame, in the middle of a "
        "message (its start was dropped); 2 requests unanswered",
        None,
        "lost",
    )
    assert upstream_end.lost(WHERE, partial=False, outstanding=1).message == (
        f"lost the connection to the app-server at {WHERE}: it closed without a close frame; 1 request unanswered"
    )
    assert upstream_end.lost(WHERE, partial=False, outstanding=0).message == (
        f"lost the connection to the app-server at {WHERE}: it closed without a close frame"
    )


@pytest.mark.parametrize(("code", "status"), [(1000, ExitStatus.OK), (1001, ExitStatus.OK), (1011, 1), (1012, 1)])
def test_a_close_frame_is_clean_only_for_1000_and_1001(code: int, status: int) -> None:
    end = upstream_end.closed(WHERE, code, "bye")
    assert (end.status, end.close_code, end.kind, end.server_code) == (status, None, "closed", code)
    assert end.message == f"the app-server at {WHERE} closed the connection ({code} bye)"
    assert upstream_end.closed(WHERE, code, None).message == f"the app-server at {WHERE} closed the connection ({code})"


def test_protocol_errors_too_big_and_no_pong_close_with_their_codes() -> None:
    protocol = upstream_end.protocol_error(WHERE, "Invalid opcode", 1002)
    assert (protocol.status, protocol.close_code, protocol.kind) == (ExitStatus.PROTOCOL, 1002, "protocol")
    big = upstream_end.too_big(TooBig(300, 3), 200)
    assert (big.close_code, big.kind) == (upstream_end.MESSAGE_TOO_BIG, "too-big")
    assert "at least 300 bytes (in 3 fragments" in (big.message or "")
    assert "over --max-incoming-size (200 bytes); closed with 1009" in (big.message or "")
    silent = upstream_end.no_pong(WHERE, 0.5)
    assert (silent.close_code, silent.kind) == (upstream_end.GOING_AWAY, "keepalive")
    assert "no pong within 0.5 s of a ping" in (silent.message or "")
    failed = upstream_end.write_failed(WHERE, "broken pipe")
    assert failed.message == f"lost the connection to the app-server at {WHERE} (broken pipe)"
