"""Issue 9, hostile input through the CLI: tiny frame limits, deep nesting, raw LF/CR, strict stdin, fragment
floods and ping storms, each against a scripted server with the proxy as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from wsproto.events import Ping, Pong, TextMessage

from .scripted_server import ScriptedConnection
from .test_scripted_server import CONTINUATION, TEXT, frame, no_traceback, one_line, run_scripted, stderr_lines

GO = b'{"method":"go","id":1}\n'


async def test_a_frame_limit_smaller_than_a_character_still_sends_the_line(tmp_path: Path) -> None:
    # issue 9 #2: "x-codex-websocket-max-unfragmented-message-bytes: 1" and "é" used to loop forever.
    frames: list[str] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept([("x-codex-websocket-max-unfragmented-message-bytes", "1")])
        while True:
            event = await conn.receive_event()
            assert isinstance(event, TextMessage), event
            frames.append(event.data)
            if event.message_finished:
                break
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin='{"method":"é😀","id":1}\n'.encode())
    assert result.status == 0, result.stderr_text
    assert "".join(frames) == '{"method":"é😀","id":1}'
    assert "é" in frames and "😀" in frames
    assert result.stdout == b'{"id":1,"result":{}}\n'


async def test_deep_message_with_a_raw_newline_answers_its_request_under_every_option(tmp_path: Path) -> None:
    # issue 9 #5 and #14: a RecursionError traceback, and a lossy re-encoding, before.
    deep = '{"id":1,"result":' + "[" * 5000 + "\n" + "]" * 5000 + ',"n":1e999,"n":2}'

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == GO.decode().strip()
        await conn.send_text(deep)
        await conn.send_text('{"method":"turn/completed","params":' + "[\r" * 3000 + "]" * 3000 + "}")
        assert await conn.receive_close() == 1000

    trace = tmp_path / "trace.jsonl"
    args = ("--until", "turn/completed", "--trace", str(trace), "-vv")
    result, _ = await run_scripted(tmp_path, handler, *args, stdin=GO)
    no_traceback(result.stderr)
    assert result.status == 0, result.stderr_text
    lines = result.stdout_lines
    assert lines[0] == deep.replace("\n", " ").encode()
    assert lines[1] == ('{"method":"turn/completed","params":' + "[ " * 3000 + "]" * 3000 + "}").encode()
    records = trace.read_bytes().split(b"\n")[:-1]
    assert sum(1 for record in records if b'"msg":' in record) == 3


async def test_refused_stdin_lines_are_reported_and_the_rest_sent(tmp_path: Path) -> None:
    # issue 9 #13 and #5: Codex drops these without a reply; 100,000 "[" used to be a traceback.
    lines = [
        b'{"id":2,"method":"m","params":{"x":NaN}}',
        b'{"id":3,"method":"m","params":{"x":"\\ud800"}}',
        b'{"id":4,"method":"m","params":' + b"[" * 127 + b"]" * 127 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"id":5,"method":"m","params":{"x":-Infinity}}',
        GO.strip(),
    ]
    received: list[str] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        received.append(await conn.receive_text())
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=b"\n".join(lines) + b"\n")
    assert result.status == 0, result.stderr_text
    assert received == [GO.decode().strip()]
    said = stderr_lines(result.stderr)
    assert [line.split(" is ")[0] for line in said] == [f"stdin line {n}" for n in (1, 2, 3, 4, 5)]
    assert "NaN" not in said[0] and "not valid JSON" in said[0]
    assert "surrogate" in said[1]
    assert "127 levels" in said[2] and "127 levels" in said[3]
    assert all(line.endswith("; not sent") for line in said)


async def test_a_request_reusing_an_id_in_flight_is_sent_with_a_warning(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_messages(2) == [GO.decode().strip()] * 2
        await conn.send_text('{"id":1,"result":{}}')
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=GO + GO)
    assert result.status == 0, result.stderr_text
    assert "stdin line 2 reuses id 1 of a request still in flight" in one_line(result.stderr)


async def test_a_flood_of_empty_fragments_trips_the_incoming_limit(tmp_path: Path) -> None:
    # issue 9 #20: empty continuation frames used to add memory and never count.
    codes: list[int | None] = []
    flood = frame(TEXT, b"", fin=False) + frame(CONTINUATION, b"", fin=False) * 20_000

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == GO.decode().strip()
        with trio.move_on_after(20):
            await conn.send_raw(flood)  # the proxy may close before reading it all
        codes.append(await conn.receive_close())

    result, _ = await run_scripted(tmp_path, handler, "--max-incoming-size", str(1024 * 1024), stdin=GO)
    assert result.status == 1, result.stderr_text
    assert codes == [1009]
    line = one_line(result.stderr)
    assert "over --max-incoming-size" in line and "fragments" in line


async def test_a_ping_storm_without_reads_is_answered_by_the_latest_pong(tmp_path: Path) -> None:
    # issue 9 #22: one pong per ping used to queue without bound while the server did not read.
    count = 40_000
    pongs: list[bytes] = []

    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == GO.decode().strip()
        storm = b"".join(conn.ws.send(Ping(payload=b"%06d" % n + b"." * 100)) for n in range(count))
        await conn.send_raw(storm)  # not reading meanwhile
        last = b"%06d" % (count - 1) + b"." * 100
        while not pongs or pongs[-1] != last:  # the most recent ping is answered once the queue is short
            event = await conn.receive_event()
            assert isinstance(event, Pong), event
            pongs.append(bytes(event.payload))
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, "--ping-interval", "0", stdin=GO)
    assert result.status == 0, result.stderr_text
    assert result.stdout == b'{"id":1,"result":{}}\n'
    assert len(pongs) < count // 2, len(pongs)
    assert pongs == sorted(pongs)  # in order, none twice


async def test_non_json_text_with_a_raw_newline_is_one_json_string_line(tmp_path: Path) -> None:
    async def handler(conn: ScriptedConnection) -> None:
        await conn.accept()
        assert await conn.receive_text() == GO.decode().strip()
        await conn.send_text("not json\nat all", fragments=3)
        await conn.send_text('{"id":1,"result":{}}')
        assert await conn.receive_close() == 1000

    result, _ = await run_scripted(tmp_path, handler, stdin=GO)
    assert result.status == 0, result.stderr_text
    assert [json.loads(line) for line in result.stdout_lines] == ["not json\nat all", {"id": 1, "result": {}}]
