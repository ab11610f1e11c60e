"""JSON-RPC messages as the proxy's stdin and stdout carry them: one compact JSON object a line.

:func:`line` writes non-ASCII characters (and U+2028) raw as UTF-8, not escaped, as Codex does.
"""

from __future__ import annotations

import json
from typing import Any

JsonObject = dict[str, Any]

CLIENT_NAME = "codex_appserver_proxy_tests"
CLIENT_TITLE = "codex-appserver-proxy tests"


def line(message: JsonObject) -> bytes:
    """One JSONL line, with non-ASCII characters (and U+2028) raw as UTF-8, not escaped."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def request(request_id: int | str, method: str, params: JsonObject | None = None) -> bytes:
    return line({"method": method, "id": request_id, "params": params if params is not None else {}})


def initialize_message(request_id: int | str, name: str = CLIENT_NAME, title: str = CLIENT_TITLE) -> JsonObject:
    """An ``initialize`` request that opts in to the experimental API."""
    client_info = {"name": name, "title": title, "version": "0"}
    return {
        "method": "initialize",
        "id": request_id,
        "params": {"clientInfo": client_info, "capabilities": {"experimentalApi": True}},
    }


def initialize(request_id: int | str = 1, name: str = CLIENT_NAME, title: str = CLIENT_TITLE) -> bytes:
    return line(initialize_message(request_id, name, title))


INITIALIZED = line({"method": "initialized"})


def parse_lines(lines: list[bytes]) -> list[JsonObject]:
    messages = [json.loads(raw) for raw in lines]
    assert all(isinstance(message, dict) for message in messages)
    return messages


def result_of(response: JsonObject) -> JsonObject:
    """The result of a successful response (it must not be an error)."""
    assert "error" not in response, response
    result = response["result"]
    assert isinstance(result, dict)
    return result
