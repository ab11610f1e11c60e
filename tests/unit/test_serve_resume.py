"""Sans-I/O rules of lossless resume (proxy.serve.resume) and of the notify command (proxy.serve.notify_rules)."""

from __future__ import annotations

import base64
import json

import pytest

from proxy.serve.notify_rules import APPROVAL, INPUT, TURN_COMPLETED, RunLimiter, event_of
from proxy.serve.resume import (
    ANONYMOUS,
    RESUME_SUBPROTOCOL,
    SHARED_TOKEN,
    Refusal,
    ResumeCode,
    ResumeRequest,
    SessionTable,
    error_response,
    parse_resume,
    resume_result,
    session_notification,
)


def test_the_protocol_messages_are_exactly_as_documented() -> None:
    assert RESUME_SUBPROTOCOL == "codex-appserver.resume.v1"
    assert json.loads(session_notification("S", "T")) == {
        "method": "bridge/session",
        "params": {"sessionId": "S", "resumeToken": "T"},
    }
    assert resume_result(7, 3) == '{"id":7,"result":{"received":3}}'
    assert json.loads(error_response("x", -32010, "m")) == {"id": "x", "error": {"code": -32010, "message": "m"}}


def test_documented_error_codes() -> None:
    assert {code.name: int(code) for code in ResumeCode} == {
        "UNKNOWN_SESSION": -32010,
        "SESSION_ENDED": -32011,
        "WRONG_TOKEN": -32012,
        "OTHER_CREDENTIALS": -32013,
        "CANNOT_REPLAY": -32014,
        "INVALID_PARAMS": -32602,
    }


def resume_text(request_id: object = 1, **params: object) -> str:
    return json.dumps({"method": "bridge/resume", "id": request_id, "params": params})


def test_parse_resume() -> None:
    assert parse_resume('{"method":"initialize","id":1}') is None
    assert parse_resume("not json bridge/resume") is None
    assert parse_resume('{"method":"thread/start","params":{"x":"bridge/resume"}}') is None
    request = parse_resume(resume_text(4, sessionId="S", resumeToken="T", received=9))
    assert request == ResumeRequest(4, "S", "T", 9)
    assert "T" not in repr(request).replace("ResumeRequest", "")  # the token is kept out of reprs
    for bad in (
        resume_text(4, sessionId="S", resumeToken="T", received=-1),
        resume_text(4, sessionId="S", resumeToken="T", received=True),
        resume_text(4, sessionId=1, resumeToken="T", received=0),
        resume_text(4, sessionId="S", received=0),
        json.dumps({"method": "bridge/resume", "id": 4}),
    ):
        parsed = parse_resume(bad)
        assert isinstance(parsed, tuple)
        assert parsed[0] == 4
        assert parsed[1].code is ResumeCode.INVALID_PARAMS
    no_id = parse_resume(json.dumps({"method": "bridge/resume", "params": {}}))
    assert isinstance(no_id, tuple)
    assert no_id[0] is None


def test_session_table_checks_in_order_unknown_ended_token_credentials() -> None:
    table: SessionTable[str] = SessionTable(max_detached=2)
    session_id, token = table.create(SHARED_TOKEN, "first")
    assert len(base64.urlsafe_b64decode(token + "=")) == 32  # 256 bits
    assert len(base64.urlsafe_b64decode(session_id + "==")) == 16
    other_id, other_token = table.create(SHARED_TOKEN, "second")
    assert token != other_token

    def check(sid: str, tok: str, identity: str = SHARED_TOKEN) -> str | Refusal:
        return table.check(ResumeRequest(1, sid, tok, 0), identity)

    assert check(session_id, token) == "first"
    assert check(other_id, other_token) == "second"
    refusal = check(session_id, other_token)
    assert isinstance(refusal, Refusal)
    assert refusal.code is ResumeCode.WRONG_TOKEN
    refusal = check(session_id, token, ANONYMOUS)
    assert isinstance(refusal, Refusal)
    assert refusal.code is ResumeCode.OTHER_CREDENTIALS
    refusal = check("nope", token)
    assert isinstance(refusal, Refusal)
    assert refusal.code is ResumeCode.UNKNOWN_SESSION
    table.ended(session_id, "nobody resumed it within --resume-window")
    refusal = check(session_id, token)
    assert isinstance(refusal, Refusal)
    assert refusal.code is ResumeCode.SESSION_ENDED
    assert "--resume-window" in refusal.message
    assert token not in refusal.message


def test_detached_sessions_are_bounded_oldest_first() -> None:
    table: SessionTable[str] = SessionTable(max_detached=2)
    ids = [table.create(ANONYMOUS, name)[0] for name in ("a", "b", "c")]
    assert table.detached(ids[0], 1.0) == []
    assert table.detached(ids[1], 2.0) == []
    assert table.detached_since(ids[1]) == 2.0
    table.attached(ids[1])
    assert table.detached_since(ids[1]) is None
    assert table.detached(ids[2], 3.0) == []
    assert table.detached(ids[1], 4.0) == ["a"]


def test_ended_sessions_are_remembered_within_a_bound() -> None:
    table: SessionTable[str] = SessionTable(max_detached=1, max_ended=2)
    ids = [table.create(ANONYMOUS, "x")[0] for _ in range(3)]
    for sid in ids:
        table.ended(sid, "closed")
    codes = []
    for sid in ids:
        refusal = table.check(ResumeRequest(1, sid, "t", 0), ANONYMOUS)
        assert isinstance(refusal, Refusal)
        codes.append(refusal.code)
    assert codes == [ResumeCode.UNKNOWN_SESSION, ResumeCode.SESSION_ENDED, ResumeCode.SESSION_ENDED]


# -- notify ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            {"id": 0, "method": "item/commandExecution/requestApproval", "params": {"threadId": "t", "turnId": "u"}},
            APPROVAL,
        ),
        ({"id": 1, "method": "item/fileChange/requestApproval", "params": {"threadId": "t", "turnId": "u"}}, APPROVAL),
        ({"id": 2, "method": "item/tool/requestUserInput", "params": {"threadId": "t", "turnId": "u"}}, INPUT),
        ({"method": "turn/completed", "params": {"threadId": "t", "turn": {"id": "u"}}}, TURN_COMPLETED),
        ({"method": "item/commandExecution/requestApproval", "params": {}}, None),  # not a request
        ({"id": 3, "method": "turn/completed", "params": {}}, None),  # not a notification
        ({"method": "item/agentMessage/delta", "params": {"delta": "turn/completed"}}, None),
        ({"id": 4, "result": {"text": "requestApproval"}}, None),
    ],
)
def test_events(message: dict[str, object], kind: str | None) -> None:
    event = event_of(json.dumps(message), "S")
    if kind is None:
        assert event is None
        return
    assert event is not None
    assert event.kind == kind
    assert event.stdin.endswith(b"\n")
    assert event.stdin.count(b"\n") == 1
    payload = json.loads(event.stdin)
    assert payload == {
        "event": kind,
        "sessionId": "S",
        "method": message["method"],
        "threadId": "t",
        "turnId": "u",
        "message": message,
    }


def test_event_of_ignores_what_is_not_json() -> None:
    assert event_of("turn/completed", "S") is None
    assert event_of('["turn/completed"]', "S") is None


def test_run_limiter() -> None:
    limiter = RunLimiter(max_runs=3, window=60.0, max_running=2)
    assert limiter.start(0.0) is None
    assert limiter.start(1.0) is None
    assert "still running" in (limiter.start(2.0) or "")
    limiter.finished()
    assert limiter.start(3.0) is None
    limiter.finished()
    limiter.finished()
    assert "within 60 s" in (limiter.start(4.0) or "")
    assert limiter.start(60.5) is None  # the first start is a window old


def test_bytes_messages_are_recognised_too() -> None:
    assert parse_resume(resume_text(1, sessionId="S", resumeToken="T", received=0).encode()) == ResumeRequest(
        1, "S", "T", 0
    )
    assert parse_resume(b'{"method":"initialize","id":1}') is None
    event = event_of(b'{"method":"turn/completed","params":{"threadId":"t","turn":{"id":"u"}}}', "S")
    assert event is not None
    assert event.kind == TURN_COMPLETED
    assert event_of(b'{"method":"item/agentMessage/delta"}', "S") is None
