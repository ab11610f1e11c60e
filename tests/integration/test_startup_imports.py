"""What ``codex-appserver proxy`` imports (issue 14, startup): only what the options given need.

Startup is within 1.25x of importing trio, wsproto, h11 and click only if the proxy loads little else:
``serve`` and its package load only for ``codex-appserver serve``, the ``--reconnect`` machinery only with
``--reconnect``, ``--raw`` and ``--start`` modules only with those. Each test runs the CLI as a real subprocess
with ``PYTHONPROFILEIMPORTTIME=1`` (``-X importtime``), which lists every module the process imported on
stderr, against a scripted server, and checks the session worked and which modules loaded. Behaviour, not
timing: how long the imports took is measured by ``scripts/startup.py`` and the benchmark, never here.
"""

from __future__ import annotations

import re
from pathlib import Path

import trio

from .proxy_process import Finished, run_proxy_cli
from .scripted_server import ScriptedConnection, open_scripted_server
from .test_scripted_server import GUARD, sock_args

#: One ``-X importtime`` line: ``import time: <self us> | <cumulative us> | <indent><module>``.
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$")
#: Modules of --reconnect (proxy/reconnect.py and what only it needs).
RECONNECT_MODULES = {"proxy.reconnect", "proxy.continuity", "proxy.pending", "proxy.inflight"}
#: Modules of options not given below: --raw, --start.
OPTION_MODULES = {"proxy.raw", "proxy.daemon"}
#: What every proxy run needs: a check that the import list was read at all.
RELAY_MODULES = {"proxy.cli", "proxy.runner", "proxy.relay", "proxy.upstream", "proxy.jsonl", "trio", "wsproto"}


async def answer_one(conn: ScriptedConnection) -> None:
    """Accept, answer request 1, take the close."""
    await conn.accept()
    if await conn.receive_message() is None:
        return
    await conn.send_text('{"id":1,"result":{}}')
    await conn.receive_close()


async def imports_of_a_session(tmp_path: Path, *args: str) -> set[str]:
    """Run one request through ``codex-appserver proxy *args``; the modules the process imported."""
    with trio.fail_after(GUARD):
        async with open_scripted_server(tmp_path, answer_one) as server:
            done: Finished = await run_proxy_cli(
                [*sock_args(server), *args],
                stdin=b'{"method":"go","id":1}\n',
                env={"PYTHONPROFILEIMPORTTIME": "1"},
            )
    lines = done.stderr_text.splitlines()
    modules = {match.group(1) for line in lines if (match := IMPORT_LINE.match(line))}
    others = [line for line in lines if not line.startswith("import time:")]
    assert (done.status, done.stdout, others) == (0, b'{"id":1,"result":{}}\n', [])
    assert modules >= RELAY_MODULES, sorted(modules)
    return modules


async def test_proxy_imports_neither_serve_nor_reconnect(tmp_path: Path) -> None:
    modules = await imports_of_a_session(tmp_path)
    assert sorted(m for m in modules if m == "proxy.serve" or m.startswith("proxy.serve.")) == []
    assert sorted(modules & (RECONNECT_MODULES | OPTION_MODULES)) == []


async def test_reconnect_imports_its_machinery_only(tmp_path: Path) -> None:
    modules = await imports_of_a_session(tmp_path, "--reconnect")
    assert modules >= RECONNECT_MODULES
    assert sorted(m for m in modules if m.startswith("proxy.serve")) == []
