"""``serve devices add NAME --join``: offer a join code to the running bridge on its control socket, print it, ask
``pair NAME from ADDRESS? [y/N]`` on this terminal when a client sends it, and make the device on ``y``.

Exit statuses: 0 paired; 1 refused, expired, or the bridge went away (:class:`~proxy.errors.SessionFailed`);
69 no bridge runs with this ``CODEX_HOME``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click
import trio

from ..errors import ExitStatus, LocalIOError, ServerUnavailable, SessionFailed, UsageError
from .control import LineReader, send_json
from .devices import DeviceStore, token_digest
from .pairdesk import CONFIRM_TIMEOUT
from .pairing import code_digest, new_join_code
from .roles import Role
from .state import CONTROL_SOCKET

#: Answers that confirm a pairing; anything else (an empty line, EOF) refuses it.
YES = frozenset({"y", "yes"})


def join(folder: Path, store: DeviceStore, name: str, role: Role, ttl: float) -> int:
    """Run the join-code session; return the exit status.

    :raises ProxyError: no bridge (69), a taken name (2), the store (74), the bridge went away (1).
    """
    if any(device.name == name for device in store.load()):
        raise UsageError(f"a device named {name!r} exists already; pick another name or revoke it first")
    return trio.run(_join_session, folder, store, name, role, ttl)


async def _join_session(folder: Path, store: DeviceStore, name: str, role: Role, ttl: float) -> int:
    path = folder / CONTROL_SOCKET
    try:
        stream = await trio.open_unix_socket(str(path))
    except OSError:
        raise ServerUnavailable(
            f"no bridge is running with this CODEX_HOME (nothing listens on {path}); start 'codex-appserver serve' "
            "first: join codes are traded with the running bridge"
        ) from None
    code = new_join_code()
    async with stream:
        reader = LineReader(stream)
        request = {"op": "join", "name": name, "role": role.value, "code_sha256": code_digest(code).hex(), "ttl": ttl}
        if not await send_json(stream, request):
            raise ServerUnavailable(f"the bridge closed its control socket {path}")
        reply = await reader.read()
        if reply is None or reply.get("ok") is not True:
            error = reply.get("error") if reply else "no answer"
            raise ServerUnavailable(f"the bridge refused the join code: {error}")
        click.echo(f"join code: {code}")
        click.echo(
            f'codex-appserver: POST {_pair_url(reply.get("url"))} with {{"code": "{code}"}} within {ttl:g} s',
            err=True,
        )
        message: dict[str, Any] | None = None
        with trio.move_on_after(ttl):
            while message is None or message.get("op") != "confirm":
                message = await reader.read()
                if message is None:
                    raise SessionFailed("the bridge stopped before the join code was used")
        if message is None or message.get("op") != "confirm":
            raise SessionFailed(f"the join code expired after {ttl:g} s unused")
        with trio.move_on_after(CONFIRM_TIMEOUT):
            return await _confirm(stream, reader, store, name, role, str(message.get("address")))
        raise SessionFailed(f"no answer within {CONFIRM_TIMEOUT:g} s; the join code is spent")


def _pair_url(url: Any) -> str:
    if isinstance(url, str) and "://" in url:
        scheme, rest = url.split("://", 1)
        host = rest.split("/", 1)[0]
        return f"{'https' if scheme == 'wss' else 'http'}://{host}/pair"
    return "/pair"


async def _confirm(
    stream: trio.abc.Stream, reader: LineReader, store: DeviceStore, name: str, role: Role, address: str
) -> int:
    click.echo(f"pair {name} from {address}? [y/N] ", nl=False)
    answer = await _read_stdin_line()
    if answer.strip().lower() not in YES:
        await send_json(stream, {"approve": False})
        click.echo(f"codex-appserver: pairing of {name} from {address} refused; the join code is spent", err=True)
        return int(ExitStatus.SESSION_FAILED)
    try:
        token = store.add(name, role)
    except (UsageError, LocalIOError):
        await send_json(stream, {"approve": False})
        raise
    await send_json(stream, {"approve": True, "token": token})
    done = await reader.read()
    if done is None or done.get("paired") is not True:
        # Nobody got the token: take the device out again (only if it is still the one made here).
        with contextlib.suppress(UsageError, LocalIOError):
            store.revoke(name, token_digest(token.encode("ascii")))
        raise SessionFailed(f"the bridge did not deliver the token of {name}; nothing was paired")
    click.echo(f"codex-appserver: paired device {name} (role {role.value}) from {address}", err=True)
    return int(ExitStatus.OK)


async def _read_stdin_line() -> str:
    """One line from stdin ("" at EOF), read without blocking the bridge's answers."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    data = bytearray()
    async with stdin:
        while b"\n" not in data and len(data) < 1024:
            chunk = await stdin.receive_some(1024)
            if not chunk:
                break
            data += chunk
    return bytes(data).split(b"\n", 1)[0].decode("utf-8", "replace")
