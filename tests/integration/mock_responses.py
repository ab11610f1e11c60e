"""A local mock of the OpenAI Responses API, so that the real Codex app-server runs whole turns offline.

:class:`MockResponses` is a stdlib HTTP server on ``127.0.0.1`` (an ephemeral port) in a thread of the test
process. Codex 0.169.0, given a custom model provider whose ``base_url`` is ``http://127.0.0.1:<port>/v1`` and
``wire_api = "responses"``, sends each model call as ``POST /v1/responses`` with a JSON body and reads the answer
as server-sent events (``event: <type>`` / ``data: <json>``), the way ``api.openai.com`` streams it.

What the mock answers is scripted per prompt: :meth:`MockResponses.script` maps a user prompt to a list of
replies. A request is matched to a script by the last user message in its ``input`` that holds a scripted
prompt; the step is the number of ``function_call_output`` items after that message (0 for the model call that
starts the turn, 1 after the first tool output came back, ...). So a turn of two model calls (a tool call, then
a final message) is ``script(prompt, FunctionCall(...), Message(...))``, and threads or turns can run at once.
Anything else (an unknown prompt, a step past the script, another path) is answered 400, which Codex does not
retry, and recorded in :attr:`MockResponses.unexpected`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JsonObject = dict[str, Any]

#: The name of the model provider in config.toml, and the model it serves.
PROVIDER = "mock"
MODEL = "mock-model"
#: How long starting or stopping the server thread may take, in seconds.
THREAD_TIMEOUT = 10.0


@dataclass(frozen=True)
class Message:
    """An assistant message whose text is streamed as these deltas, in order (``response.output_text.delta``).

    :param delay: seconds to wait before the first event (the turn stays in progress meanwhile).
    """

    deltas: tuple[str, ...]
    delay: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.deltas)


@dataclass(frozen=True)
class FunctionCall:
    """A call of the tool *name* (e.g. ``exec_command``) with JSON *arguments*."""

    name: str
    arguments: JsonObject
    call_id: str = "call_mock_1"


Reply = Message | FunctionCall


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the mock received."""

    method: str
    path: str
    headers: dict[str, str]
    body: JsonObject | None
    #: The scripted prompt it matched and the step in that script, or None.
    prompt: str | None = None
    step: int | None = None

    def function_call_outputs(self) -> list[JsonObject]:
        """The ``function_call_output`` items of the request's ``input``."""
        return [item for item in _input_items(self.body) if item.get("type") == "function_call_output"]

    def tool_names(self) -> list[str]:
        """The names of the tools offered to the model."""
        tools = (self.body or {}).get("tools") or []
        return [str(tool.get("name")) for tool in tools if isinstance(tool, dict) and tool.get("name")]


@dataclass
class _State:
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    responses: int = 0


class MockResponses:
    """The mock server; use :func:`running_mock_responses` to start and always stop it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self.stopping = threading.Event()  # cuts scripted delays short
        mock = self

        class Handler(_Handler):
            owner = mock

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="mock-responses", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket. Idempotent."""
        self.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(THREAD_TIMEOUT)
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What goes into the provider's ``base_url`` (Codex appends ``/responses``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def config_toml(self) -> str:
        """A ``config.toml`` that sends every model call here, and keeps Codex off the network otherwise."""
        return f"""\
model_provider = "{PROVIDER}"
model = "{MODEL}"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
remote_plugin = false

[model_providers.{PROVIDER}]
name = "Mock Responses API"
base_url = "{self.base_url}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""

    # -- the script ------------------------------------------------------------------------------------

    def script(self, prompt: str, *replies: Reply) -> None:
        """Answer the model calls of a turn whose user message is *prompt* with *replies*, one per call."""
        with self._lock:
            self._state.scripts[prompt] = list(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def unexpected(self) -> list[str]:
        """Requests the script did not cover, in words."""
        with self._lock:
            return list(self._state.unexpected)

    def requests_for(self, prompt: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.prompt == prompt]

    # -- called by the handler threads -----------------------------------------------------------------

    def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[Reply, str] | str:
        """Record the request; return the reply to stream and its response id, or why it is unexpected."""
        body: JsonObject | None = None
        problem: str | None = None
        prompt: str | None = None
        step: int | None = None
        if method != "POST" or not path.rstrip("/").endswith("/responses"):
            problem = f"{method} {path}: not a Responses API call"
        else:
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                problem = (
                    f"{method} {path}: body is not JSON ({exc}; content-encoding {headers.get('content-encoding')})"
                )
            else:
                body = parsed if isinstance(parsed, dict) else None
        with self._lock:
            if problem is None:
                prompt, step = _match(_input_items(body), self._state.scripts)
                if prompt is None:
                    problem = f"{method} {path}: no scripted prompt in the user messages {_user_texts(body)!r}"
                elif step is None or step >= len(self._state.scripts[prompt]):
                    problem = f"{method} {path}: step {step} of {prompt!r} is past its script"
            self._state.requests.append(RecordedRequest(method, path, headers, body, prompt, step))
            if problem is not None:
                self._state.unexpected.append(problem)
                return problem
            assert prompt is not None
            assert step is not None
            self._state.responses += 1
            return self._state.scripts[prompt][step], f"resp_mock_{self._state.responses}"


class _Handler(BaseHTTPRequestHandler):
    owner: MockResponses
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the requests are recorded; keep pytest's output clean

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        answer = self.owner._dispatch(self.command, self.path, headers, raw)
        try:
            if isinstance(answer, str):
                self._error(answer)
                return
            reply, response_id = answer
            if isinstance(reply, Message) and reply.delay:
                self.owner.stopping.wait(reply.delay)
            self._stream(_events(reply, response_id))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # Codex went away (stopped, or the turn was cancelled)

    def _error(self, message: str) -> None:
        body = json.dumps({"error": {"message": f"mock: {message}", "type": "invalid_request_error"}}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _stream(self, events: Sequence[JsonObject]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()  # one event per write: the deltas really arrive one by one
        self.close_connection = True


def _events(reply: Reply, response_id: str) -> list[JsonObject]:
    """The server-sent events of one model call answering *reply*."""
    events: list[JsonObject] = [{"type": "response.created", "response": {"id": response_id}}]
    if isinstance(reply, Message):
        item_id = f"msg_{response_id}"
        item: JsonObject = {"type": "message", "role": "assistant", "id": item_id, "status": "in_progress"}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}})
        events.extend(
            {
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": delta,
            }
            for delta in reply.deltas
        )
        content = [{"type": "output_text", "text": reply.text, "annotations": []}]
        events.append(
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {**item, "status": "completed", "content": content},
            }
        )
    else:
        events.append(
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "type": "function_call",
                    "id": f"fc_{response_id}",
                    "call_id": reply.call_id,
                    "name": reply.name,
                    "arguments": json.dumps(reply.arguments),
                    "status": "completed",
                },
            }
        )
    usage = {
        "input_tokens": 0,
        "input_tokens_details": None,
        "output_tokens": 0,
        "output_tokens_details": None,
        "total_tokens": 0,
    }
    events.append({"type": "response.completed", "response": {"id": response_id, "usage": usage}})
    return events


def _input_items(body: JsonObject | None) -> list[JsonObject]:
    items = (body or {}).get("input") or []
    return [item for item in items if isinstance(item, dict)]


def _message_text(item: JsonObject) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))


def _user_texts(body: JsonObject | None) -> list[str]:
    return [
        _message_text(item)[:200]
        for item in _input_items(body)
        if item.get("type") == "message" and item.get("role") == "user"
    ]


def _match(items: list[JsonObject], scripts: dict[str, list[Reply]]) -> tuple[str | None, int | None]:
    """The scripted prompt of the last user message holding one, and the tool outputs after it."""
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        if item.get("type") != "message" or item.get("role") != "user":
            continue
        text = _message_text(item).strip()
        if text in scripts:
            step = sum(1 for later in items[index + 1 :] if later.get("type") == "function_call_output")
            return text, step
    return None, None


@contextlib.contextmanager
def running_mock_responses() -> Iterator[MockResponses]:
    """A started mock, stopped on exit whatever happened."""
    mock = MockResponses()
    mock.start()
    try:
        yield mock
    finally:
        mock.stop()
