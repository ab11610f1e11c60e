"""Whole turns through the proxy: the real Codex app-server, its model replaced by a local mock of the Responses
API (:mod:`tests.integration.mock_responses`), so every turn runs offline and is the same each time.

- a turn streams ``item/agentMessage/delta`` notifications, in order, then ``turn/completed``;
- the model runs a shell command under an approval policy that asks first: the server's request reaches stdout,
  the answer written to stdin goes back, the command runs and the turn completes;
- the shell pipeline: a one-shot proxy run that resumes a thread and starts a turn on it prints the whole turn
  with ``--until turn/completed``, and stops after the responses without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from . import jsonrpc
from .codex_server import CodexServer
from .jsonrpc import INITIALIZED, JsonObject, line, parse_lines, request
from .mock_responses import FunctionCall, Message, MockResponses
from .proxy_process import ProxyProcess, close_and_finish, run_proxy_cli, running_proxy

pytestmark = pytest.mark.codex

#: Guards against hangs; never what is measured (the machine is slow and shared).
TIMEOUT = 120

# -- JSON-RPC lines ------------------------------------------------------------------------------------

CLIENT_NAME = "proxy-turn-tests"


def initialize(request_id: int | str = 1, name: str = CLIENT_NAME) -> bytes:
    return jsonrpc.initialize(request_id, name)


def turn_start(request_id: int, thread_id: str, text: str) -> bytes:
    return request(request_id, "turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": text}]})


def is_response(message: JsonObject) -> bool:
    return "id" in message and "method" not in message


def is_server_request(message: JsonObject) -> bool:
    return "id" in message and "method" in message


def response_to(messages: list[JsonObject], request_id: int | str) -> JsonObject:
    """The one successful result answering *request_id*."""
    found = [m for m in messages if is_response(m) and m["id"] == request_id and type(m["id"]) is type(request_id)]
    assert len(found) == 1, f"{len(found)} responses to {request_id!r}"
    assert "error" not in found[0], found[0]
    result = found[0]["result"]
    assert isinstance(result, dict)
    return result


def notifications(messages: list[JsonObject], method: str) -> list[JsonObject]:
    """The params of the notifications with *method*, in order."""
    return [m["params"] for m in messages if m.get("method") == method and "id" not in m]


def deltas_of(messages: list[JsonObject], turn_id: str) -> list[str]:
    return [
        params["delta"] for params in notifications(messages, "item/agentMessage/delta") if params["turnId"] == turn_id
    ]


def completed_turns(messages: list[JsonObject], thread_id: str) -> list[JsonObject]:
    """The ``turn`` objects of the ``turn/completed`` notifications for *thread_id*."""
    return [params["turn"] for params in notifications(messages, "turn/completed") if params["threadId"] == thread_id]


# -- an interactive proxy ------------------------------------------------------------------------------


async def read_until(
    proxy: ProxyProcess, done: Callable[[JsonObject], bool], requests_allowed: bool = False
) -> list[JsonObject]:
    """Read stdout messages up to and including the first one for which *done* is true."""
    messages: list[JsonObject] = []
    while True:
        message = json.loads(await proxy.read_line())
        assert isinstance(message, dict)
        messages.append(message)
        if done(message):
            return messages
        assert requests_allowed or not is_server_request(message), f"unexpected request from the server: {message}"


async def call(proxy: ProxyProcess, request_id: int, method: str, params: JsonObject) -> JsonObject:
    """Send a request and return its result (notifications on the way are skipped)."""
    await proxy.send(request(request_id, method, params))
    messages = await read_until(proxy, lambda m: is_response(m) and m["id"] == request_id)
    return response_to(messages, request_id)


async def start_session(proxy: ProxyProcess, server: CodexServer) -> None:
    await proxy.send(initialize(1))
    messages = await read_until(proxy, lambda m: is_response(m) and m["id"] == 1)
    assert response_to(messages, 1)["codexHome"] == str(server.codex_home)
    await proxy.send(INITIALIZED)


async def start_thread(proxy: ProxyProcess, request_id: int, cwd: Path, approval_policy: str) -> str:
    result = await call(proxy, request_id, "thread/start", {"cwd": str(cwd), "approvalPolicy": approval_policy})
    assert result["approvalPolicy"] == approval_policy
    thread_id = result["thread"]["id"]
    assert isinstance(thread_id, str)
    assert thread_id
    return thread_id


def ends_turn(thread_id: str) -> Callable[[JsonObject], bool]:
    def done(message: JsonObject) -> bool:
        return message.get("method") == "turn/completed" and message["params"]["threadId"] == thread_id

    return done


async def run_turn(proxy: ProxyProcess, request_id: int, thread_id: str, text: str) -> tuple[str, list[JsonObject]]:
    """Start a turn and read until it completes; return its id and every message read meanwhile."""
    await proxy.send(turn_start(request_id, thread_id, text))
    messages = await read_until(proxy, ends_turn(thread_id))
    turn_id = response_to(messages, request_id)["turn"]["id"]
    assert isinstance(turn_id, str)
    return turn_id, messages


async def finish(proxy: ProxyProcess) -> list[JsonObject]:
    """Close stdin, read stdout to its end, expect exit 0 and a quiet stderr; return the messages left."""
    rest = await close_and_finish(proxy)
    assert proxy.stderr_text == ""
    assert not rest or rest.endswith(b"\n")
    return parse_lines(rest.split(b"\n")[:-1])


def assert_message_turn(messages: list[JsonObject], thread_id: str, turn_id: str, reply: Message) -> None:
    """The turn streamed exactly *reply*'s deltas, in order, completed its agent message with the whole text, and
    completed; ``turn/completed`` came after the last delta."""
    assert deltas_of(messages, turn_id) == list(reply.deltas)
    agent_messages = [
        params["item"]
        for params in notifications(messages, "item/completed")
        if params["item"]["type"] == "agentMessage" and params["turnId"] == turn_id
    ]
    assert [item["text"] for item in agent_messages] == [reply.text]
    (completed,) = completed_turns(messages, thread_id)
    assert completed["id"] == turn_id
    assert completed["status"] == "completed", completed
    last_delta = max(i for i, m in enumerate(messages) if m.get("method") == "item/agentMessage/delta")
    first_completed = min(i for i, m in enumerate(messages) if m.get("method") == "turn/completed")
    assert last_delta < first_completed


# -- fixtures ------------------------------------------------------------------------------------------


# -- the scripts ---------------------------------------------------------------------------------------

HELLO_PROMPT = "Say hello."
#: Non-ASCII text and a raw U+2028 (which Codex does not escape) in the deltas: stdout lines split on LF only.
HELLO = Message(("Hello", ", wor", "ld: caf\u00e9 ", "\u2028", "\u2014 all ", "in order."))

RUN_PROMPT = "Run the command."
ECHO_COMMAND = "echo approved-$((6 * 7))"
ECHO_OUTPUT = "approved-42"  # only the shell makes this out of ECHO_COMMAND: the command really ran
RUN_CALL = FunctionCall("exec_command", {"cmd": ECHO_COMMAND}, call_id="call_echo")
RUN_DONE = Message(("The command ", "printed ", ECHO_OUTPUT, "."))

PIPE_PROMPT = "Continue from a shell pipeline."
PIPE_REPLY = Message(("Piped ", "through ", "the proxy."))
#: The model takes a while to answer, so without --until the proxy is sure to end before the turn does.
SLOW_PROMPT = "Answer slowly."
SLOW_REPLY = Message(("Too ", "late."), delay=5.0)


async def hello_turn(proxy: ProxyProcess, server: CodexServer, workdir: Path, approval_policy: str) -> tuple[str, str]:
    """Start a session and a thread (request 2, *approval_policy*) whose first turn (request 3) streams
    :data:`HELLO`, checked with :func:`assert_message_turn`; return the thread's and the turn's ids."""
    await start_session(proxy, server)
    thread_id = await start_thread(proxy, 2, workdir, approval_policy)
    turn_id, messages = await run_turn(proxy, 3, thread_id, HELLO_PROMPT)
    assert_message_turn(messages, thread_id, turn_id, HELLO)
    return thread_id, turn_id


# -- the tests -----------------------------------------------------------------------------------------


async def test_turn_streams_agent_message_deltas_in_order(
    turn_server: CodexServer, mock_model: MockResponses, workdir: Path
) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)

    with trio.fail_after(TIMEOUT):
        async with running_proxy([], env=turn_server.env) as proxy:
            # hello_turn checks the deltas, in order, and the completed message and turn.
            _, turn_id = await hello_turn(proxy, turn_server, workdir, "never")
            rest = await finish(proxy)
            assert deltas_of(rest, turn_id) == []

    (model_call,) = mock_model.requests_for(HELLO_PROMPT)
    assert model_call.step == 0
    assert "exec_command" in model_call.tool_names()


async def test_command_approval_round_trip(turn_server: CodexServer, mock_model: MockResponses, workdir: Path) -> None:
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(RUN_PROMPT, RUN_CALL, RUN_DONE)

    with trio.fail_after(TIMEOUT):
        async with running_proxy([], env=turn_server.env) as proxy:
            thread_id, _ = await hello_turn(proxy, turn_server, workdir, "untrusted")

            # The second turn: the model calls exec_command, and "untrusted" makes Codex ask first.
            await proxy.send(turn_start(4, thread_id, RUN_PROMPT))
            before = await read_until(
                proxy, lambda m: m.get("method") == "item/commandExecution/requestApproval", requests_allowed=True
            )
            approval = before[-1]
            approval_id = approval["id"]
            assert type(approval_id) is int
            second_turn = response_to(before, 4)["turn"]["id"]
            assert approval["params"]["threadId"] == thread_id
            assert approval["params"]["turnId"] == second_turn
            assert approval["params"]["itemId"] == RUN_CALL.call_id
            assert ECHO_COMMAND in approval["params"]["command"]
            assert not [m for m in before[:-1] if is_server_request(m)]
            assert not completed_turns(before, thread_id)
            assert [r.step for r in mock_model.requests_for(RUN_PROMPT)] == [0]  # no tool output yet: it waits

            await proxy.send(line({"id": approval_id, "result": {"decision": "accept"}}))
            after = await read_until(proxy, ends_turn(thread_id))

            resolved = notifications(after, "serverRequest/resolved")
            assert [params["requestId"] for params in resolved] == [approval_id]
            commands = [
                params["item"]
                for params in notifications(after, "item/completed")
                if params["item"]["type"] == "commandExecution"
            ]
            assert len(commands) == 1, commands
            assert commands[0]["status"] == "completed", commands[0]
            assert commands[0]["exitCode"] == 0
            assert ECHO_OUTPUT in commands[0]["aggregatedOutput"]
            assert_message_turn(before + after, thread_id, second_turn, RUN_DONE)

            await finish(proxy)

    steps = mock_model.requests_for(RUN_PROMPT)
    assert [r.step for r in steps] == [0, 1]
    (output,) = steps[1].function_call_outputs()
    assert output["call_id"] == RUN_CALL.call_id
    assert ECHO_OUTPUT in json.dumps(output)


async def test_pipeline_resumes_a_thread_and_prints_the_whole_turn(
    turn_server: CodexServer, mock_model: MockResponses, workdir: Path
) -> None:
    """`printf '...' | codex-appserver proxy --until turn/completed` continues a thread from a shell."""
    mock_model.script(HELLO_PROMPT, HELLO)
    mock_model.script(PIPE_PROMPT, PIPE_REPLY)
    mock_model.script(SLOW_PROMPT, SLOW_REPLY)

    with trio.fail_after(TIMEOUT):
        # A first turn, so that the thread has a rollout to resume (0.169.0: "no rollout found" before one).
        async with running_proxy([], env=turn_server.env) as proxy:
            thread_id, _ = await hello_turn(proxy, turn_server, workdir, "never")
            await finish(proxy)

        def pipeline(prompt: str) -> bytes:
            return (
                initialize(1)
                + INITIALIZED
                + request(2, "thread/resume", {"threadId": thread_id})
                + turn_start(3, thread_id, prompt)
            )

        done = await run_proxy_cli(["--until", "turn/completed"], pipeline(PIPE_PROMPT), env=turn_server.env)

        assert done.status == 0, done.stderr_text
        assert done.stderr_text == ""
        messages = parse_lines(done.stdout_lines)
        assert response_to(messages, 2)["thread"]["id"] == thread_id
        turn_id = response_to(messages, 3)["turn"]["id"]
        assert_message_turn(messages, thread_id, turn_id, PIPE_REPLY)

        # The same pipeline without --until ends once the three requests are answered: the turn is cut off.
        without = await run_proxy_cli([], pipeline(SLOW_PROMPT), env=turn_server.env)

        assert without.status == 0, without.stderr_text
        assert without.stderr_text == ""
        messages = parse_lines(without.stdout_lines)
        assert response_to(messages, 2)["thread"]["id"] == thread_id
        slow_turn = response_to(messages, 3)["turn"]["id"]
        assert slow_turn != turn_id
        assert completed_turns(messages, thread_id) == []
        assert deltas_of(messages, slow_turn) == []


async def test_until_is_bounded_by_the_drain_timeout(codex_server: CodexServer) -> None:
    """No turn, so no turn/completed: the drain gives up after --drain-timeout and says what was missing."""
    done = await run_proxy_cli(
        ["--until", "turn/completed", "--drain-timeout", "1"], initialize(1) + INITIALIZED, env=codex_server.env
    )

    assert done.status == 1
    assert done.stderr_text.count("\n") == 1
    assert done.stderr_text.startswith("codex-appserver: ")
    assert "turn/completed" in done.stderr_text
    assert "--drain-timeout" in done.stderr_text
    assert response_to(parse_lines(done.stdout_lines), 1)["codexHome"] == str(codex_server.codex_home)


async def test_until_any_of_several_methods(codex_server: CodexServer, workdir: Path) -> None:
    """--until is repeatable: whichever of the methods comes first after the last line ends the drain."""
    stdin = initialize(1) + INITIALIZED + request(2, "thread/start", {"cwd": str(workdir)})

    done = await run_proxy_cli(
        ["--until", "turn/completed", "--until", "thread/started", "--drain-timeout", "60"], stdin, env=codex_server.env
    )

    assert done.status == 0, done.stderr_text
    assert done.stderr_text == ""
    messages = parse_lines(done.stdout_lines)
    thread_id = response_to(messages, 2)["thread"]["id"]
    assert [params["thread"]["id"] for params in notifications(messages, "thread/started")] == [thread_id]
