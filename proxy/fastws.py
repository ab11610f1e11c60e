"""A drop-in for :class:`wsproto.connection.Connection` with a fast path for whole, unfragmented data frames.

Sans-I/O, like wsproto. Profiling the relay showed most of its CPU in wsproto's per-frame parsing, masking and
serializing. This class handles only the common case itself and hands everything else to a wsproto
:class:`~wsproto.connection.Connection` it wraps, so wsproto stays the protocol engine:

- **Receiving.** A frame is *simple* when it is a text or binary frame with FIN set, no RSV bit, masked exactly
  when the peer is a client (RFC 6455 §5.1), a minimal payload length (§5.2), arrives whole, and starts while no
  fragmented message is in progress. Such a frame becomes one :class:`~wsproto.events.TextMessage` (strict
  UTF-8, §8.1) or :class:`~wsproto.events.BytesMessage`, exactly the event wsproto makes of it. A simple
  frame of up to :data:`HOLD_FRAME_BYTES` that arrives in pieces is kept until it is whole, then handed out
  as that one event, where wsproto hands out a piece per read: its message is complete at the same read. Only a
  binary frame, or an unmasked text frame while what arrived of it is ASCII, is kept: in those wsproto finds
  no error before the frame ends, so only the pieces differ.
  Every other byte goes to wsproto, in order and as it arrives: control frames, fragments, a bigger frame whose
  payload is still coming, and anything wsproto would reject (then wsproto reports it, with its close code and
  reason, and takes every later byte). A header prefix is kept back only while it can still become a simple
  frame, where wsproto would also just wait. So the messages, their order, the control frames, the errors and
  the state at the end are wsproto's, for any stream and any read boundaries (``tests/unit/test_fastws.py``
  checks this against wsproto with hypothesis).
- **Sending.** A whole :class:`~wsproto.events.Message` (``message_finished``) outside a fragmented one, in state
  OPEN, is framed here (:mod:`proxy.framing`): text if its data is ``str``, else binary, as wsproto decides. A
  client masks every frame with a fresh random 32-bit key (§5.3). Everything else goes to wsproto.

Extensions are not supported on the fast path: with any, every byte goes to wsproto.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING

from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, TextMessage

from .framing import BINARY, TEXT, Framer
from .masking import mask

if TYPE_CHECKING:
    from wsproto.extensions import Extension

#: A simple frame of up to this many payload bytes that arrives in pieces is kept until it is whole, then handed
#: out as one event; wsproto streams a bigger one (its events then come in pieces, as the bytes arrive).
HOLD_FRAME_BYTES = 1024 * 1024

_RECEIVING = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
_DATA_OPCODES = (0x0, 0x1, 0x2)
_CONTROL_OPCODES = (0x8, 0x9, 0xA)
_CLOSE = 0x8
_HOLD = -1  # a header prefix that may still become a simple frame: wait for more bytes
_SLOW = -2  # wsproto takes this frame and every byte after it


#: A whole text message from the fast path: the event *is* its UTF-8 bytes (type exactly ``bytes``), already
#: validated (RFC 6455 §8.1); what ``TextMessage(data=event.decode("utf-8"), frame_finished=True,
#: message_finished=True)`` says. No wrapper object: building one cost a Python call per message (about a
#: tenth of serve's CPU at 100 B). Every other event is a wsproto Event (a binary message is a BytesMessage),
#: so an event of type bytes is always this.
Utf8Text = bytes


class Connection:
    """The methods and properties of :class:`wsproto.connection.Connection` the relays use, same semantics.

    :param connection_type: CLIENT (frames out are masked, frames in must not be) or SERVER (the reverse).
    :param extensions: as wsproto's; any extension turns the fast path off.
    :param trailing_data: bytes received after the opening handshake.
    :param utf8_text: the fast path hands out a whole text message as :class:`Utf8Text` (its UTF-8 bytes,
        validated) instead of a :class:`~wsproto.events.TextMessage` (a str): for a relay, which passes the
        bytes on, a decode and an encode of every message fewer. Messages from wsproto stay TextMessages.
    """

    def __init__(
        self,
        connection_type: ConnectionType,
        extensions: list[Extension] | None = None,
        trailing_data: bytes = b"",
        *,
        utf8_text: bool = False,
    ) -> None:
        self._ws = WsprotoConnection(connection_type, extensions)
        self.client = connection_type is ConnectionType.CLIENT
        self._mask_in = 0 if self.client else 0x80  # the mask bit frames from the peer must carry
        self._framer = Framer(masked=self.client)
        self._slow = bool(extensions)  # wsproto takes every byte from now on
        self._buffer = b""  # received, not yet handed out; from self._at on
        self._at = 0
        self._remaining = 0  # payload bytes still due of the frame wsproto is in the middle of
        self._in_message = False  # wsproto is inside a fragmented message
        self._sending_fragments = False  # an outgoing message is being sent in fragments (by wsproto)
        self._fed = False  # wsproto got bytes whose events may not all have been handed out yet
        self._held: list[bytes] = []  # the start of a simple frame still arriving (HOLD_FRAME_BYTES), in pieces
        self._held_size = 0
        self._wanted = 0  # bytes that complete the held frame (0: none held)
        self._held_text = False  # the held frame is a text frame: only ASCII is held
        self._release = False  # the frame at the buffer's start goes to wsproto however big
        self._utf8_text = utf8_text
        self.receive_data(trailing_data)

    @property
    def state(self) -> ConnectionState:
        """The connection's state (wsproto's: the fast path never changes it)."""
        return self._ws.state

    # -- sending ---------------------------------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes that send *event*; as :meth:`wsproto.connection.Connection.send`, same errors."""
        if (
            isinstance(event, Message)
            and event.message_finished
            and not self._sending_fragments
            and not self._slow
            and self._ws.state is ConnectionState.OPEN
        ):
            data = event.data
            if isinstance(data, str):
                return self._framer.frame(TEXT, data.encode("utf-8"))
            if isinstance(data, (bytes, bytearray, memoryview)):
                return self._framer.frame(BINARY, bytes(data))
        out = self._ws.send(event)
        if isinstance(event, Message):
            self._sending_fragments = not event.message_finished
        return bytes(out)

    def send_utf8(self, data: bytes | bytearray) -> bytes:
        """The bytes that send the valid UTF-8 *data* as one whole text message: the same as
        ``send(TextMessage(data=data.decode("utf-8")))``, without decoding it on the fast path.

        :raises UnicodeDecodeError: *data* is not UTF-8 and the fast path cannot take it (the caller's bug).
        """
        if not self._sending_fragments and not self._slow and self._ws.state is ConnectionState.OPEN:
            return self._framer.frame(TEXT, data)
        return self.send(TextMessage(data=data.decode("utf-8")))

    def send_texts(self, texts: Sequence[str | bytes | bytearray]) -> bytes:
        """The bytes that send each of *texts* as one whole text message, in order, joined: a str as
        ``send(TextMessage(data=text))``, UTF-8 bytes as :meth:`send_utf8` (the caller's promise: valid UTF-8).

        One call for the messages of one read: a relay's per-message calls (a frame, a key, a join) cost about a
        tenth of its CPU per 100 B message. Each frame still gets its own random masking key (RFC 6455 §5.3).

        :raises UnicodeEncodeError: a str holds a lone surrogate (as :meth:`send`).
        """
        if self._sending_fragments or self._slow or self._ws.state is not ConnectionState.OPEN:
            return b"".join(
                [self.send(TextMessage(data=t)) if isinstance(t, str) else self.send_utf8(t) for t in texts]
            )
        return self._framer.texts(texts)

    def send_utf8_parts(self, data: bytes | bytearray) -> tuple[bytes, bytes | bytearray]:
        """:meth:`send_utf8` as two pieces to write one after the other: the frame header (with the masking key)
        and the payload, so a big payload is not copied once more to join them (a gathering write takes both)."""
        if not self._sending_fragments and not self._slow and self._ws.state is ConnectionState.OPEN:
            return self._framer.parts(TEXT, data)
        return self.send_utf8(data), b""

    # -- receiving -------------------------------------------------------------------------------------

    def receive_data(self, data: bytes | None) -> None:
        """Take bytes from the peer (None: the transport closed); as wsproto's, same errors."""
        if data is None or self._slow:
            if data is None:
                self._go_slow()
            self._feed(data)
            return
        if self._wanted:  # the rest of a frame being held: join only once it is all here
            if self._held_text and not data[: self._wanted - self._held_size].isascii():
                self._release = True  # wsproto checks this UTF-8 as it arrives: it streams the frame
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size >= self._wanted or self._release:
                self._buffer = b"".join(self._held)
                self._held = []
                self._wanted = self._held_size = 0
            return
        if self._at < len(self._buffer):
            self._buffer = self._buffer[self._at :] + data
        else:
            self._buffer = bytes(data)
        self._at = 0

    def _hold(self, rest: bytes, frame_size: int, text: bool) -> None:
        """Keep *rest* (the start of a simple frame of *frame_size* bytes) aside until the whole frame is here."""
        self._held_text = text
        self._held = [rest]
        self._held_size = len(rest)
        self._wanted = frame_size
        self._buffer = b""
        self._at = 0

    def _feed(self, data: bytes | None) -> None:
        self._fed = True
        self._ws.receive_data(data)

    def _go_slow(self) -> None:
        """Hand the bytes held to wsproto; from now on it takes every byte."""
        self._slow = True
        rest = b"".join([*self._held, self._buffer[self._at :]])
        self._held = []
        self._wanted = self._held_size = 0
        self._buffer = b""
        self._at = 0
        if rest and self._ws.state in _RECEIVING:
            self._feed(rest)

    def _from_wsproto(self) -> Generator[Event, None, None]:
        if not self._fed:
            return  # nothing new for wsproto: skip its parser (a few microseconds per read)
        for event in self._ws.events():
            if isinstance(event, CloseConnection):  # a close frame or an error: wsproto parses no more
                self._go_slow()
            yield event
        self._fed = False  # only once every event is out: a reader that stops early gets the rest next time

    def events(self) -> Generator[Event | Utf8Text, None, None]:
        """The events the received bytes make, in order (a generator, as wsproto's)."""
        yield from self._from_wsproto()
        buffer = self._buffer
        size = len(buffer)
        while not self._slow and self._at < size:
            at = self._at
            if self._remaining:  # wsproto is in the middle of a frame: give it up to that frame's end
                end = min(size, at + self._remaining)
                self._remaining -= end - at
                self._at = end
                self._feed(buffer[at:end])
                yield from self._from_wsproto()
                continue
            first = buffer[at]
            if at + 1 == size:
                break  # one byte: wsproto would wait too
            second = buffer[at + 1]
            if (first == 0x81 or first == 0x82) and second & 0x80 == self._mask_in and not self._in_message:
                length = second & 0x7F
                start = at + 2
                if length == 126:
                    if start + 2 > size:
                        break
                    length = buffer[start] << 8 | buffer[start + 1]
                    start += 2
                    if length < 126:
                        self._go_slow()  # not minimal: wsproto says so
                        break
                elif length == 127:
                    if start + 8 > size:
                        break
                    length = int.from_bytes(buffer[start : start + 8], "big")
                    start += 8
                    if length < 0x10000 or length >> 63:
                        self._go_slow()
                        break
                key = None
                if self._mask_in:
                    if start + 4 > size:
                        break
                    key = buffer[start : start + 4]
                    start += 4
                end = start + length
                if end > size and self._holds(first, length, key, buffer, start, size):  # one event, once whole
                    self._hold(buffer[at:], end - at, first == 0x81)
                    return
                self._release = False
                if end > size:  # a bigger payload is still coming: wsproto streams it
                    self._remaining = end - size
                    self._at = size
                    self._feed(buffer[at:size])
                    yield from self._from_wsproto()
                    continue
                payload = buffer[start:end] if key is None else bytes(mask(buffer[start:end], key))
                if first == 0x82:
                    self._at = end
                    yield BytesMessage(data=payload, frame_finished=True, message_finished=True)
                    continue
                if self._utf8_text and payload.isascii():  # ASCII is UTF-8: nothing to decode
                    self._at = end
                    yield payload  # a Utf8Text
                    continue
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    self._go_slow()  # wsproto closes with 1007 and its own reason
                    break
                self._at = end
                yield (
                    payload  # a Utf8Text
                    if self._utf8_text
                    else TextMessage(data=text, frame_finished=True, message_finished=True)
                )
                continue
            verdict = self._other_frame(buffer, at, size)
            if verdict == _HOLD:
                break
            if verdict == _SLOW:
                self._go_slow()
                break
            # wsproto takes this frame: its header and the payload that is here
            end = min(size, verdict)
            self._remaining = verdict - end
            self._at = end
            self._feed(buffer[at:end])
            yield from self._from_wsproto()
        if self._slow:
            yield from self._from_wsproto()
        elif self._at:
            self._buffer = buffer[self._at :]
            self._at = 0

    def _holds(self, first: int, length: int, key: bytes | None, buffer: bytes, start: int, size: int) -> bool:
        """Whether to keep a simple frame that is still arriving until it is whole (:data:`HOLD_FRAME_BYTES`).

        Only where that changes nothing but the pieces of its message: a binary frame, or an unmasked text frame
        whose payload so far is ASCII (wsproto would find no UTF-8 error in it before the frame ends).
        """
        if length > HOLD_FRAME_BYTES or self._release:
            return False
        return first == 0x82 or (key is None and buffer[start:size].isascii())

    def _other_frame(self, buffer: bytes, at: int, size: int) -> int:
        """Judge a frame that is not simple, as wsproto would (``wsproto.frame_protocol``).

        :returns: _HOLD (a valid header prefix: wait), _SLOW (wsproto will reject it, or a close frame: wsproto
            takes everything from here), or the offset where this valid frame (control or fragment) ends.
        """
        first, second = buffer[at], buffer[at + 1]
        opcode = first & 0x0F
        fin = first & 0x80
        control = opcode in _CONTROL_OPCODES
        if not control and opcode not in _DATA_OPCODES:
            return _SLOW  # invalid opcode
        length = second & 0x7F
        if control and (not fin or length > 125):
            return _SLOW
        start = at + 2
        if length == 126:
            if start + 2 > size:
                return _HOLD
            length = buffer[start] << 8 | buffer[start + 1]
            start += 2
            if length < 126:
                return _SLOW
        elif length == 127:
            if start + 8 > size:
                return _HOLD
            length = int.from_bytes(buffer[start : start + 8], "big")
            start += 8
            if length < 0x10000 or length >> 63:
                return _SLOW
        if first & 0x70 or second & 0x80 != self._mask_in:
            return _SLOW  # a reserved bit (no extensions), or masking the wrong way round
        if self._mask_in:
            start += 4  # wsproto waits for the key; an incomplete one ends the frame later than `size`
            if start > size:
                return _HOLD
        if opcode == _CLOSE:
            return _SLOW
        if not control:
            if (opcode == 0) != self._in_message:
                return _SLOW  # a continuation outside a message, or a new message inside one
            self._in_message = not fin
        return start + length
