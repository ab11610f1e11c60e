"""The downstream endpoint of ``proxy``: JSONL on stdin and stdout (trio side).

Two tasks (:meth:`StdioEndpoint.run`):

- ``_read_stdin``: stdin bytes -> lines (:mod:`proxy.lines`) -> checked by the session -> text messages for the
  relay, read no faster than the socket accepts; at EOF, the relay's drain;
- ``_write_stdout``: the app-server's messages as lines -> stdout, in pieces that end at line ends. What stdout
  has not taken waits in memory (:data:`STDOUT_MEMORY_BYTES`), then in the spool file, so the app-server is
  always read at full speed; stdout only ever receives whole lines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .ending import Ending, stdout_failure
from .errors import ExitStatus, ProxyError, reason_of
from .lines import LineSplitter, LineTooLong, line_pieces, message_line
from .options import MiB, ProxyOptions
from .outbox import Outbox
from .session import BadLine
from .spool import Spool
from .upstream import NORMAL_CLOSURE, Text

if TYPE_CHECKING:
    from .relay import Relay

log = logging.getLogger("codex_appserver")

#: Bytes asked for per read of stdin.
RECEIVE_BYTES = 256 * 1024
#: Output for stdout kept in memory before it goes to the spool file, in bytes.
STDOUT_MEMORY_BYTES = 8 * MiB
#: stdout is written in pieces of about this many bytes, each ending at a line end.
STDOUT_WRITE_BYTES = 64 * 1024


class StdioEndpoint:
    """stdin and stdout of one ``proxy`` run, as the relay's downstream."""

    upstream_gone_code: int | None = None

    def __init__(self, options: ProxyOptions, stdin: trio.abc.ReceiveStream, stdout: trio.abc.SendStream) -> None:
        self._options = options
        self._stdin = stdin
        self._stdout = stdout
        self._to_stdout = Outbox(STDOUT_MEMORY_BYTES, Spool(options.spool_limit, options.spool_dir))
        self._stdin_scope = trio.CancelScope()

    async def run(self, relay: Relay) -> None:
        self._relay = relay
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_stdout)
            nursery.start_soon(self._read_stdin)

    # -- stdin -> relay --------------------------------------------------------------------------------

    async def _read_stdin(self) -> None:
        try:
            await self._forward_stdin()
        except ProxyError as exc:  # the trace file failed
            self._end(exc.status, exc.message)

    def _end(self, status: int, message: str) -> None:
        self._relay.end(Ending(status, message), NORMAL_CLOSURE)

    async def _forward_stdin(self) -> None:
        upstream = self._relay.upstream
        with self._stdin_scope:
            splitter = LineSplitter(self._options.max_message_size)
            while True:
                await upstream.wait_writable()
                try:
                    chunk = await self._stdin.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self._end(ExitStatus.IOERR, f"cannot read stdin: {reason_of(exc)}")
                    return
                if not chunk:
                    break
                if not self._forward(splitter.feed(bytes(chunk))):
                    return
            if not self._forward(splitter.end()):
                return
            await self._relay.drain(f"stdin EOF after {splitter.line_count} lines", self._options.drain_timeout)

    def _forward(self, items: list[tuple[int, bytes | bytearray] | LineTooLong]) -> bool:
        """Send the lines as text messages; False once nothing more may be sent."""
        relay = self._relay
        upstream = relay.upstream
        session = relay.session
        assert session is not None
        for item in items:
            if not upstream.open:
                return False
            if isinstance(item, LineTooLong):
                reason = f"{item.size} bytes, over --max-message-size ({self._options.max_message_size} bytes)"
                if not self._bad_line(BadLine(item.number, reason)):
                    return False
                continue
            number, line = item
            text = session.outgoing(number, line)
            if isinstance(text, BadLine):
                if not self._bad_line(text):
                    return False
                continue
            if session.notice is not None:
                log.warning("%s", session.notice)
            relay.forward(text)
        relay.tap.flush()
        return upstream.open

    def _bad_line(self, bad: BadLine) -> bool:
        if self._options.strict:
            self._end(
                ExitStatus.SESSION_FAILED, f"stdin line {bad.number} is {bad.reason}; stopped because of --strict"
            )
            return False
        log.warning("stdin line %d is %s; not sent", bad.number, bad.reason)
        return True

    # -- relay -> stdout -------------------------------------------------------------------------------

    def deliver(self, texts: list[Text]) -> None:
        lines = [message_line(text) for text in texts]
        self._to_stdout.put(lines[0] if len(lines) == 1 else b"".join(lines))  # one line: no copy to join

    async def _write_stdout(self) -> None:
        while True:
            try:
                data = await self._to_stdout.take()
            except ProxyError as exc:  # the spool file cannot be read back (issue 9 #1)
                self._to_stdout.close()
                self._relay.downstream_failed(Ending(exc.status, exc.message))
                return
            try:
                for piece in line_pieces(data, STDOUT_WRITE_BYTES):
                    await self._stdout.send_all(piece)
                    if self._to_stdout.abandoned:
                        break  # stop at a line end: stdout never gets half a line
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._to_stdout.close()
                self._relay.downstream_failed(stdout_failure(exc))
                return
            self._to_stdout.done()

    # -- ending ----------------------------------------------------------------------------------------

    def stop_receiving(self) -> None:
        self._stdin_scope.cancel()

    async def finish(self, ending: Ending) -> None:
        await self._to_stdout.wait_flushed()

    def abandon(self) -> None:
        self._to_stdout.abandon()

    def close(self) -> None:
        self._to_stdout.close()
