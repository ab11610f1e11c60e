"""A first-in, first-out byte store in an unlinked temporary file, for output the stdout reader is not taking.

Plain synchronous file I/O: the file lives in the page cache, so appends and reads cost a memory copy, and an
unlinked :func:`tempfile.TemporaryFile` disappears with the process however it ends.
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import BinaryIO

from .errors import LocalIOError, descriptor_limit_error


class Spool:
    """Bytes appended at the end and read from the front, at most *limit* bytes held at once.

    :param limit: the most bytes the file may hold, in bytes (``--spool-limit``).
    :param directory: where the file goes; None for the default temporary folder (``$TMPDIR``).
    :raises LocalIOError: from :meth:`append`, past *limit* or when the disk fails, also part way through a
        write (the bytes of that append do not count; the caller gives up); from :meth:`read` when the file
        cannot be read back whole (exit status 74).
    """

    def __init__(self, limit: int, directory: str | None = None) -> None:
        self._limit = limit
        self._directory = directory
        self._file: BinaryIO | None = None
        self._read_at = 0
        self._write_at = 0

    def __len__(self) -> int:
        """Bytes appended and not yet read."""
        return self._write_at - self._read_at

    def append(self, data: bytes | bytearray) -> None:
        """Add *data* at the end."""
        if self._write_at + len(data) > self._limit:
            raise LocalIOError(
                f"stdout is not being read and the spool is full ({self._limit} bytes, --spool-limit); "
                "read the proxy's stdout faster or raise --spool-limit"
            )
        start = self._write_at
        try:
            if self._file is None:
                # Kept open for the spool's life and closed in close(); unlinked from the start.
                self._file = tempfile.TemporaryFile(prefix="codex-appserver-spool-", dir=self._directory)  # noqa: SIM115
            view = memoryview(data)
            while view:  # pwrite(2) may write less than asked (a full disk): go on, or fail on the next call
                written = os.pwrite(self._file.fileno(), view, self._write_at)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                self._write_at += written
                view = view[written:]
        except OSError as exc:
            self._write_at = start
            limit = descriptor_limit_error(exc)
            if limit is not None:
                raise limit from None
            # Never call gettempdir() here: with no usable temporary folder it raises again (issue 9 #7).
            where = self._directory or os.environ.get("TMPDIR") or "the temporary folder"
            reason = exc.strerror or str(exc)
            self._write_at = start  # a part written counts for nothing: the reader only ever gets whole appends
            raise LocalIOError(
                f"cannot write the spool file in {where}: {reason}; free space or set TMPDIR to a writable folder"
            ) from None

    def read(self, size: int) -> bytes:
        """Take whole lines from the front: about *size* bytes, cut after the last LF in them.

        A line longer than *size* comes whole; bytes after the last LF come only once nothing follows
        them. ``b""`` when empty.
        """
        if self._file is None or not len(self):
            return b""
        data = self._pread(min(size, len(self)), self._read_at)
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]
        else:  # no LF yet: read on to the end of this long line
            more = bytearray(data)
            while b"\n" not in data and len(more) < len(self):
                data = self._pread(min(size, len(self) - len(more)), self._read_at + len(more))
                cut = data.find(b"\n")
                more += data[: cut + 1] if cut >= 0 else data
            data = bytes(more)
        self._read_at += len(data)
        if self._read_at == self._write_at:  # empty again: start over at offset 0, give the disk back
            self._read_at = self._write_at = 0
            self._file.truncate(0)
        return data

    def _pread(self, size: int, offset: int) -> bytes:
        assert self._file is not None
        try:
            data = os.pread(self._file.fileno(), size, offset)
        except OSError as exc:
            raise LocalIOError(f"cannot read the spool file: {exc.strerror}") from None
        if not data:  # shorter than what was written to it: never loop on empty reads (issue 9 #1)
            raise LocalIOError("cannot read the spool file: it is shorter than what was written to it")
        return data

    def close(self) -> None:
        """Delete the file now."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._read_at = self._write_at = 0
