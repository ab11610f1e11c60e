"""JSON-RPC bookkeeping and stdin validation (proxy.session)."""

from __future__ import annotations

import json
import random

from proxy.session import BadLine, Retry, Session, backoff_delay, id_key


def test_request_ids_tracked_until_their_responses_in_any_order() -> None:
    session = Session()
    assert session.outgoing(1, b'{"method":"a","id":1}') == b'{"method":"a","id":1}'
    session.outgoing(2, b'{"method":"b","id":"1"}')
    session.outgoing(3, b'{"method":"initialized"}')  # notification: nothing owed
    session.close_stdin()
    assert session.outstanding == 2 and not session.drained
    session.incoming('{"id":"1","result":{}}')
    assert session.outstanding == 1
    session.incoming('{"id":1,"error":{"code":-1,"message":"x"}}')
    assert session.drained


def test_int_and_string_ids_are_distinct() -> None:
    session = Session()
    session.outgoing(1, b'{"method":"a","id":1}')
    session.incoming('{"id":"1","result":{}}')
    assert session.outstanding == 1


def test_server_requests_and_notifications_do_not_answer_ours() -> None:
    session = Session()
    session.outgoing(1, b'{"method":"a","id":0}')
    session.incoming('{"method":"item/commandExecution/requestApproval","id":0,"params":{}}')
    session.incoming('{"method":"thread/started","params":{"id":0}}')
    assert session.outstanding == 1


def test_client_responses_to_server_requests_are_not_tracked() -> None:
    session = Session()
    session.outgoing(1, b'{"id":0,"result":{"decision":"accept"}}')
    session.close_stdin()
    assert session.drained


def test_escaped_id_key_still_matches() -> None:
    session = Session()
    session.outgoing(1, b'{"method":"a","id":7}')
    session.incoming('{"\\u0069d":7,"result":null}')
    assert session.outstanding == 0


def test_duplicate_ids_need_two_responses() -> None:
    session = Session()
    session.outgoing(1, b'{"method":"a","id":5}')
    session.outgoing(2, b'{"method":"a","id":5}')
    session.incoming('{"id":5,"result":1}')
    assert session.outstanding == 1


def test_not_drained_before_stdin_eof() -> None:
    session = Session()
    assert not session.drained
    session.close_stdin()
    assert session.drained


def test_invalid_utf8_and_json_are_bad_lines_with_position() -> None:
    session = Session()
    assert session.outgoing(3, b'{"a":"\xff"}') == BadLine(3, "not valid UTF-8 (byte 7)")
    assert session.outgoing(4, b"{oops}") == BadLine(4, "not valid JSON (object keys must be strings at column 2)")
    assert session.outgoing(5, b'{"a":1} {"b":2}') == BadLine(5, "not valid JSON (trailing characters at column 10)")


def test_id_key() -> None:
    assert id_key(1) != id_key("1")
    assert id_key(True) is None and id_key(None) is None and id_key([1]) is None
    assert id_key(1) == id_key(1.0)


def overloaded(id_: object) -> str:
    return json.dumps({"id": id_, "error": {"code": -32001, "message": "Server overloaded; retry later."}})


def test_overload_error_is_retried_with_the_same_request_then_delivered() -> None:
    session = Session(overload_retries=2, rng=random.Random(1))
    request = '{"method":"thread/list","id":9,"params":{}}'
    session.outgoing(1, request.encode())
    first = session.incoming(overloaded(9))
    assert isinstance(first, Retry) and first.text == request.encode() and first.attempt == 1
    second = session.incoming(overloaded(9))
    assert isinstance(second, Retry) and second.attempt == 2
    assert session.outstanding == 1
    assert session.incoming(overloaded(9)) is None  # retries used up: the error is delivered
    assert session.outstanding == 0


def test_success_after_retry_forgets_the_attempts() -> None:
    session = Session(overload_retries=1, rng=random.Random(1))
    session.outgoing(1, b'{"method":"a","id":1}')
    assert session.incoming(overloaded(1)) is not None
    assert session.incoming('{"id":1,"result":{}}') is None
    session.outgoing(2, b'{"method":"a","id":1}')  # the id reused later gets its own retries
    assert session.incoming(overloaded(1)) is not None


def test_other_errors_and_disabled_retries_are_delivered() -> None:
    session = Session(overload_retries=3)
    session.outgoing(1, b'{"method":"a","id":1}')
    assert session.incoming('{"id":1,"error":{"code":-32600,"message":"Not initialized"}}') is None
    plain = Session()
    plain.outgoing(1, b'{"method":"a","id":1}')
    assert plain.incoming(overloaded(1)) is None


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(7)
    for attempt, base in [(1, 0.05), (2, 0.1), (3, 0.2), (6, 1.6), (7, 2.0), (20, 2.0)]:
        delays = [backoff_delay(attempt, rng) for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1
