"""stdin validation as strict as Codex's parser (issue 9 #13, #5), the reused-id warning and the retry bound (#21)."""

from __future__ import annotations

import proxy.session
from proxy.session import BadLine, Retry, Session

RETRY_MEMORY_CHARS: int = getattr(proxy.session, "RETRY_MEMORY_CHARS", 16 * 1024 * 1024)


def nested(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def request(depth: int) -> bytes:
    """A request whose params hold arrays nested so that the whole line is *depth* levels deep."""
    return b'{"id":1,"method":"m","params":' + nested(depth - 1) + b"}"


def test_127_levels_pass_and_128_are_refused() -> None:
    session = Session()
    assert not isinstance(session.outgoing(1, request(127)), BadLine)
    assert session.outgoing(2, request(128)) == BadLine(2, "nested more than 127 levels deep (Codex's limit)")
    assert not isinstance(session.outgoing(3, nested(127)), BadLine)
    assert isinstance(session.outgoing(4, nested(128)), BadLine)


def test_deep_lines_are_refused_without_recursion_and_later_lines_still_pass() -> None:
    session = Session()
    assert session.outgoing(1, nested(100_000)) == BadLine(1, "nested more than 127 levels deep (Codex's limit)")
    assert isinstance(session.outgoing(2, b'{"a":' * 5000 + b"1" + b"}" * 5000), BadLine)
    assert session.outgoing(3, b'{"id":1,"method":"m"}') == b'{"id":1,"method":"m"}'


def test_brackets_inside_strings_do_not_count() -> None:
    assert not isinstance(Session().outgoing(1, b'{"a":"' + b"[" * 500 + b'\\"{{"}'), BadLine)
    # Escaped backslashes before a closing quote, escaped quotes, other escapes: the strings still pair up.
    tricky = b'{"a\\\\":"\\\\","b":"\\"[\\n\\\\\\"","c":' + nested(126) + b',"d":"' + b"]" * 300 + b'"}'
    assert not isinstance(Session().outgoing(1, tricky), BadLine)
    deeper = tricky.replace(nested(126), nested(127))
    assert Session().outgoing(2, deeper) == BadLine(2, "nested more than 127 levels deep (Codex's limit)")


def test_non_finite_numbers_are_refused() -> None:
    session = Session()
    for number, word in enumerate([b"NaN", b"Infinity", b"-Infinity"], start=1):
        bad = session.outgoing(number, b'{"id":1,"method":"m","params":{"x":' + word + b"}}")
        assert isinstance(bad, BadLine) and bad.reason.startswith("not valid JSON (")


def test_lone_surrogate_escapes_are_refused_and_pairs_pass() -> None:
    session = Session()
    reason = "not valid JSON (a lone UTF-16 surrogate escape such as \\ud800)"
    assert session.outgoing(1, b'{"a":"\\ud800"}') == BadLine(1, reason)
    assert session.outgoing(2, b'{"a":"\\udc00x"}') == BadLine(2, reason)
    assert session.outgoing(3, b'{"a":"\\ud800\\u0041"}') == BadLine(3, reason)
    assert not isinstance(session.outgoing(4, b'{"a":"\\ud83d\\ude00"}'), BadLine)
    assert not isinstance(session.outgoing(5, b'{"a":"\\\\ud800"}'), BadLine)  # an escaped backslash, then text


def test_what_codex_accepts_is_sent_byte_exact() -> None:
    # Measured on Codex 0.169.0: answered, so sent unchanged.
    for line in [
        b'{"id":1,"method":"m","params":{"x":1e999}}',
        b'{"id":1,"method":"m","params":{"x":' + b"1" * 5000 + b"}}",
        b'{"id":1,"method":"m","params":{"x":1,"x":2}}',
    ]:
        assert Session().outgoing(1, line) == line


def test_ids_codex_does_not_answer_are_refused() -> None:
    # Measured on Codex 0.169.0: a request with id 1.5 or a 25-digit id gets no reply.
    session = Session()
    assert isinstance(session.outgoing(1, b'{"id":1.5,"method":"m"}'), BadLine)
    assert isinstance(session.outgoing(2, b'{"id":' + b"1" * 25 + b',"method":"m"}'), BadLine)
    assert not isinstance(session.outgoing(3, b'{"id":9223372036854775807,"method":"m"}'), BadLine)
    assert session.outgoing(4, b'{"id":1.5,"result":{}}') == b'{"id":1.5,"result":{}}'  # a response: not ours
    assert session.outstanding == 1


def test_a_request_reusing_an_id_in_flight_is_sent_with_a_warning() -> None:
    session = Session()
    assert not isinstance(session.outgoing(1, b'{"id":7,"method":"m"}'), BadLine)
    assert session.notice is None
    assert not isinstance(session.outgoing(2, b'{"id":7,"method":"m"}'), BadLine)
    assert session.notice is not None and "line 2 reuses id 7" in session.notice
    session.incoming('{"id":7,"result":{}}')
    session.incoming('{"id":7,"result":{}}')
    assert not isinstance(session.outgoing(3, b'{"id":7,"method":"m"}'), BadLine)
    assert session.notice is None


def test_retry_texts_are_bounded_and_requests_past_the_bound_are_not_retried() -> None:
    session = Session(overload_retries=3)
    size = 1024
    count = RETRY_MEMORY_CHARS // (size - 40) + 10  # each line is shorter than size: go well past the bound
    for n in range(count):
        line = b'{"id":%d,"method":"m","params":"%s"}' % (n, b"x" * (size - 40))
        assert not isinstance(session.outgoing(n + 1, line), BadLine)
    assert session.retry_memory <= RETRY_MEMORY_CHARS
    overloaded = '{"id":%d,"error":{"code":-32001,"message":"Server overloaded; retry later."}}'
    assert isinstance(session.incoming(overloaded % 0), Retry)
    assert session.incoming(overloaded % (count - 1)) is None  # past the bound: delivered, not retried
    assert session.outstanding == count - 1
    session.incoming('{"id":0,"result":{}}')
    assert session.retry_memory < RETRY_MEMORY_CHARS


def test_deep_server_messages_cross_requests_off_without_recursion() -> None:
    session = Session(until=frozenset({"turn/completed"}))
    assert not isinstance(session.outgoing(1, b'{"id":1,"method":"m"}'), BadLine)
    assert session.incoming('{"id":1,"result":' + "[" * 5000 + "]" * 5000 + "}") is None
    assert session.outstanding == 0
    session.close_stdin()
    assert session.incoming('{"method":"turn/completed","params":' + "[" * 5000 + "\n]" * 5000 + "}") is None
    assert session.drained
