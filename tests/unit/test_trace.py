"""Trace records and ``-vv`` lines never parse a message into objects (issue 9 #5, #14, #19)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from proxy.trace import Tap


def records(buffer: io.BytesIO) -> list[bytes]:
    data = buffer.getvalue()
    assert data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def test_deep_message_with_a_raw_newline_is_traced_and_logged_without_recursion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = io.BytesIO()
    tap = Tap(trace, log_messages=True)
    deep = '{"id":3,"result":' + "[" * 5000 + "\n" + "]" * 5000 + "}"
    with caplog.at_level(logging.DEBUG, logger="codex_appserver"):
        tap.message("in", deep)
    (line,) = records(trace)
    assert line.endswith(b',"msg":' + deep.replace("\n", " ").encode() + b"}")
    assert line.startswith(b'{"t":') and b'"dir":"in","bytes":' + str(len(deep)).encode() in line
    assert [r.getMessage() for r in caplog.records] == [f"in {len(deep)} bytes: response id=3"]


def test_messages_are_recorded_byte_exact_and_non_json_as_a_string() -> None:
    trace = io.BytesIO()
    tap = Tap(trace)
    exact = '{"id":1,"n":1e999,"d":1,"d":2,"big":' + "1" * 5000 + ',"s":"é\u2028"}'
    tap.message("out", exact)
    tap.message("in", "not json\nat all")
    first, second = records(trace)
    assert first.endswith(b',"msg":' + exact.encode() + b"}")
    assert json.loads(second)["msg"] == "not json\nat all"
    assert json.loads(second)["bytes"] == 15


def test_describe_kinds(caplog: pytest.LogCaptureFixture) -> None:
    tap = Tap(None, log_messages=True)
    with caplog.at_level(logging.DEBUG, logger="codex_appserver"):
        for text in [
            '{"id":"a","method":"m"}',
            '{"method":"n"}',
            '{"id":2,"error":{"code":-32001}}',
            "[1]",
            "nope",
            "{}",
        ]:
            tap.message("in", text)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        'request m id="a"',
        "notification n",
        "error response id=2 code=-32001",
        "not a JSON object",
        "not JSON",
        "JSON object without method or id",
    ]
