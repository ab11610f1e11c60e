"""What crossed the proxy, for people debugging a JSONL client: ``--trace FILE`` records and ``-vv`` log lines.

A trace record is one JSON object per line, appended to the file:

- a message: ``{"t": <unix time, s>, "dir": "out"|"in", "bytes": <UTF-8 size>, "msg": <the JSON message>}``
  (``"out"`` is stdin -> app-server; text that is not JSON is recorded as a string);
- an event: ``{"t": ..., "event": "connect"|"handshake"|"close"|"eof", ...}`` with its details.

Tokens and ``Authorization`` headers are never recorded: events carry only what :class:`Tap` is given, the
handshake event records the response headers, never the request's, and every record passes through
:data:`proxy.redact.SECRETS` before it is written, so a token the server echoes (in a 101 header or a message)
is replaced too.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from typing import BinaryIO

from .envelope import Envelope, read_envelope
from .errors import LocalIOError, descriptor_limit_error
from .redact import SECRETS

log = logging.getLogger("codex_appserver")

_NEWLINES_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")
_NOT_A_FILE = (
    "the trace file {path} is a {kind}; --trace writes to a regular file (or a terminal), "
    "so trace to a file and follow it with 'tail -f'"
)


def describe(envelope: Envelope | None) -> str:
    """A payload-free summary of a JSON-RPC message for ``-vv``: kind, method, id, error code.

    *envelope* is the message's :func:`~proxy.envelope.read_envelope` (None: not JSON).
    """
    if envelope is None:
        return "not JSON"
    if not envelope.is_object:
        return "not a JSON object"
    if envelope.method is not None:
        return (
            f"request {envelope.method} id={envelope.id_json}" if envelope.has_id else f"notification {envelope.method}"
        )
    if envelope.has_id:
        if envelope.error_code is not None:
            return f"error response id={envelope.id_json} code={envelope.error_code}"
        return f"response id={envelope.id_json}"
    return "JSON object without method or id"


class Tap:
    """Sees every message and connection event; writes the trace file and the ``-vv`` lines when asked.

    :param trace: the open ``--trace`` file, or None.
    :param log_messages: log one line per message at DEBUG (``-vv``).
    :param label: starts each such line, e.g. the bridge client's address.
    """

    def __init__(self, trace: BinaryIO | None = None, log_messages: bool = False, label: str = "") -> None:
        self._trace = trace
        self._log_messages = log_messages
        self._label = label
        self.active = trace is not None or log_messages

    @classmethod
    def open(cls, path: str | None, log_messages: bool) -> Tap:
        """A tap appending to *path* (None: no trace file).

        The file is opened without blocking (``O_NONBLOCK``): a FIFO nobody reads would block ``open()``
        forever, signals unanswered (issue 9 #3). Only a regular file or a character device (a terminal,
        ``/dev/null``) is kept; a FIFO or socket is refused, since a reader that stalls would stall the relay
        with it. Writes are blocking again once open.

        :raises LocalIOError: the file cannot be opened for appending, or is a FIFO or socket (exit status 74).
        """
        if path is None:
            return cls(None, log_messages)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as exc:
            limit = descriptor_limit_error(exc)
            if limit is not None:
                raise limit from None
            if exc.errno == errno.ENXIO:  # a FIFO with no reader
                raise LocalIOError(f"{_NOT_A_FILE.format(path=path, kind='FIFO (named pipe)')}") from None
            raise LocalIOError(f"cannot open the trace file {path}: {exc.strerror}; check --trace") from None
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
            os.close(fd)
            kind = "FIFO (named pipe)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "special file"
            raise LocalIOError(_NOT_A_FILE.format(path=path, kind=kind))
        os.set_blocking(fd, True)  # our own open file description: nobody else sees this flag
        return cls(os.fdopen(fd, "ab"), log_messages)

    def message(self, direction: str, text: str | bytes | bytearray) -> None:
        """Record one message (str, or its UTF-8 bytes) going ``"out"`` (to the app-server) or coming ``"in"``.

        The message is never parsed into objects: JSON goes into the record as it came (a raw CR or LF, which
        in JSON can only be whitespace, as a space), other text as a JSON string.
        """
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        envelope = read_envelope(data)
        if self._log_messages:
            log.debug("%s%s %d bytes: %s", self._label, direction, len(data), describe(envelope))
        if self._trace is not None:
            import json  # loaded only with --trace (start-up does without json); then a lookup in sys.modules

            body: bytes | bytearray
            if envelope is None:
                body = json.dumps(data.decode("utf-8", "surrogatepass"), ensure_ascii=False).encode(
                    "utf-8", "surrogatepass"
                )
            elif b"\n" in data or b"\r" in data:
                body = data.translate(_NEWLINES_TO_SPACES)
            else:
                body = data
            head = json.dumps({"t": time.time(), "dir": direction, "bytes": len(data)}, separators=(",", ":"))
            self._write_parts(head[:-1].encode() + b',"msg":', body, b"}\n")

    def event(self, name: str, **details: object) -> None:
        """Record a connection event (never pass a token or a request header here)."""
        if self._trace is not None:
            self._write({"t": time.time(), "event": name, **details})

    def flush(self) -> None:
        if self._trace is not None:
            try:
                self._trace.flush()
            except OSError as exc:
                raise LocalIOError(f"cannot write the trace file: {exc.strerror}") from None

    def close(self) -> None:
        if self._trace is not None:
            with contextlib.suppress(OSError):  # a last flush failing at exit changes nothing for the session
                self._trace.close()
            self._trace = None

    def _write(self, record: dict[str, object]) -> None:
        import json  # see message()

        text = SECRETS(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        self._write_parts(text.encode("utf-8", "surrogatepass"), b"\n")

    def _write_parts(self, *parts: bytes | bytearray) -> None:
        """Write one record in pieces (no copy of a large message to join them); secrets redacted."""
        assert self._trace is not None
        if SECRETS:  # only with a token: then a message is decoded to look for it
            parts = tuple(
                SECRETS(part.decode("utf-8", "surrogatepass")).encode("utf-8", "surrogatepass") for part in parts
            )
        try:
            for part in parts:
                self._trace.write(part)
        except OSError as exc:
            raise LocalIOError(f"cannot write the trace file: {exc.strerror}") from None
