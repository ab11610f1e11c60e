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
from .fdio import direct_receiver, direct_writer
from .lines import LineSplitter, LineTooLong, line_pieces, message_lines
from .options import MiB, ProxyOptions
from .outbox import Outbox
from .session import BadLine
from .spool import Spool
from .stdio import FINISH_PIECE_SECONDS
from .upstream import Text
from .upstream_end import NORMAL_CLOSURE

if TYPE_CHECKING:
    from .relay import Relay

log = logging.getLogger("codex_appserver")

#: Bytes asked for per read of stdin.
RECEIVE_BYTES = 256 * 1024
#: Output for stdout kept in memory before it goes to the spool file, in bytes (most of the streaming RSS above
#: the interpreter's when stdout's reader lags: 8 MiB cost 4-6 MiB of peak RSS more than 2 MiB).
STDOUT_MEMORY_BYTES = 2 * MiB
#: While stdout has more than STDOUT_MEMORY_BYTES queued, stdin is read at most once per this many seconds
#: unless stdout catches up first.
STDOUT_CATCH_UP_SECONDS = 0.02
#: stdout is written in pieces of about this many bytes, each ending at a line end.
STDOUT_WRITE_BYTES = 1 * MiB


class StdioEndpoint:
    """stdin and stdout of one ``proxy`` run, as the relay's downstream."""

    upstream_gone_code: int | None = None

    def __init__(self, options: ProxyOptions, stdin: trio.abc.ReceiveStream, stdout: trio.abc.SendStream) -> None:
        self._options = options
        self._receive_stdin = direct_receiver(stdin, checkpoint_first=False)
        self._stdout = stdout
        # Lines are written at once in the task that receives them, when stdout takes them (no task switch, no
        # wake-up); the writer task takes what stdout did not, beginning with the rest of a line cut short.
        self._to_stdout = Outbox(
            STDOUT_MEMORY_BYTES, Spool(options.spool_limit, options.spool_dir), write_now=direct_writer(stdout)
        )
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
                if len(self._to_stdout) >= STDOUT_MEMORY_BYTES:
                    await self._let_stdout_catch_up()
                try:
                    chunk = await self._receive_stdin(RECEIVE_BYTES)
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

    async def _let_stdout_catch_up(self) -> None:
        """Give stdout's reader up to :data:`STDOUT_CATCH_UP_SECONDS` to take the output queued for it before
        reading more stdin: a client that reads its stdout, only slower than the app-server answers, then paces
        its requests instead of sending the output through the spool file (a write and a read of every byte).
        A client that never reads is only slowed, never stalled: it may write all its requests before it reads.
        """
        with trio.move_on_after(STDOUT_CATCH_UP_SECONDS):
            await self._to_stdout.wait_below(STDOUT_MEMORY_BYTES)

    def _forward(self, items: list[tuple[int, bytes | bytearray] | LineTooLong]) -> bool:
        """Send the lines as text messages, in one write to the socket; False once nothing more may be sent."""
        upstream = self._relay.upstream
        upstream.cork()
        try:
            return self._forward_lines(items)
        finally:
            upstream.uncork()

    def _forward_lines(self, items: list[tuple[int, bytes | bytearray] | LineTooLong]) -> bool:
        relay = self._relay
        session = relay.session
        assert session is not None
        if not relay.upstream.open:
            return False
        texts: list[bytes | bytearray] = []  # the checked lines, sent together (Relay.forward_all)
        for item in items:
            bad: BadLine | None = None
            if isinstance(item, LineTooLong):
                reason = f"{item.size} bytes, over --max-message-size ({self._options.max_message_size} bytes)"
                bad = BadLine(item.number, reason)
            else:
                checked = session.outgoing(*item)
                if isinstance(checked, BadLine):
                    bad = checked
                else:
                    if session.notice is not None:
                        log.warning("%s", session.notice)
                    texts.append(checked)
            if bad is not None and not self._bad_line(bad):
                relay.forward_all(texts)  # the lines before a refused one still go (--strict)
                return False
        relay.forward_all(texts)
        relay.tap.flush()
        return relay.upstream.open

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
        self._to_stdout.put(message_lines(texts))

    async def _write_stdout(self) -> None:
        try:
            await self._write_stdout_pieces()
        except trio.Cancelled:
            # A line a direct write began must still end whole (issue 9 #11), even now.
            rest = self._to_stdout.take_line_rest()
            if rest:
                await self._send_whole(rest)
            raise

    async def _write_stdout_pieces(self) -> None:
        outbox = self._to_stdout
        while True:
            try:
                data = await outbox.take()
            except ProxyError as exc:  # the spool file cannot be read back (issue 9 #1)
                outbox.close()
                self._relay.downstream_failed(Ending(exc.status, exc.message))
                return
            try:
                if outbox.line_rest:  # the rest of a line a direct write began: whole, even when cancelled
                    await self._send_whole(data)
                else:
                    for piece in line_pieces(data, STDOUT_WRITE_BYTES):
                        await self._stdout.send_all(piece)
                        if outbox.abandoned:
                            break  # stop at a line end: stdout never gets half a line
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                outbox.close()
                self._relay.downstream_failed(stdout_failure(exc))
                return
            outbox.done()

    async def _send_whole(self, data: bytes | bytearray) -> None:
        """Write *data* shielded from cancellation, for up to :data:`~proxy.stdio.FINISH_PIECE_SECONDS`."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + FINISH_PIECE_SECONDS):
            await self._stdout.send_all(data)

    # -- ending ----------------------------------------------------------------------------------------

    def stop_receiving(self) -> None:
        self._stdin_scope.cancel()

    async def finish(self, ending: Ending) -> None:
        await self._to_stdout.wait_flushed()

    def abandon(self) -> None:
        self._to_stdout.abandon()

    def close(self) -> None:
        self._to_stdout.close()
