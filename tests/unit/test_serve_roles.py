"""The observer rule (proxy/serve/roles.py): one test per row of the roles table, plus what is refused or dropped."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.serve.roles import (
    OBSERVER_ALLOWLIST,
    OBSERVER_NOTIFICATIONS,
    ROLE_FORBIDDEN,
    Drop,
    Forward,
    Refuse,
    Role,
    check,
)

OBSERVER = Role.OBSERVER


def request(method: str, params: object = None, request_id: object = 7) -> str:
    message: dict[str, object] = {"method": method, "id": request_id}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def refusal(verdict: object) -> dict[str, object]:
    assert isinstance(verdict, Refuse), verdict
    reply = json.loads(verdict.reply)
    assert isinstance(reply, dict)
    return reply


# -- the table, one row each --------------------------------------------------------------------------------


def test_initialize_is_allowed() -> None:
    params = {"clientInfo": {"name": "phone", "version": "1"}, "capabilities": {"experimentalApi": True}}
    assert check(OBSERVER, request("initialize", params)) == Forward()


def test_initialized_notification_is_allowed() -> None:
    assert check(OBSERVER, json.dumps({"method": "initialized"})) == Forward()


def test_thread_list_is_allowed() -> None:
    assert check(OBSERVER, request("thread/list", {"limit": 5, "archived": False})) == Forward()


def test_thread_loaded_list_is_allowed() -> None:
    assert check(OBSERVER, request("thread/loaded/list", {})) == Forward()


def test_thread_read_is_allowed() -> None:
    assert check(OBSERVER, request("thread/read", {"threadId": "t", "includeTurns": True})) == Forward()


def test_thread_turns_list_is_allowed() -> None:
    assert check(OBSERVER, request("thread/turns/list", {"threadId": "t", "limit": 3})) == Forward()


def test_thread_items_list_is_allowed() -> None:
    assert check(OBSERVER, request("thread/items/list", {"threadId": "t", "turnId": "u"})) == Forward()


def test_thread_resume_is_allowed_with_the_thread_only() -> None:
    assert check(OBSERVER, request("thread/resume", {"threadId": "t"})) == Forward()
    assert check(OBSERVER, request("thread/resume", {"threadId": "t", "excludeTurns": True})) == Forward()
    reply = refusal(check(OBSERVER, request("thread/resume", {"threadId": "t", "approvalPolicy": "never"})))
    error = reply["error"]
    assert isinstance(error, dict)
    assert error["code"] == ROLE_FORBIDDEN
    assert "approvalPolicy" in error["message"]
    assert "observer" in error["message"]


def test_thread_unsubscribe_is_allowed() -> None:
    assert check(OBSERVER, request("thread/unsubscribe", {"threadId": "t"})) == Forward()


def test_model_list_is_allowed() -> None:
    assert check(OBSERVER, request("model/list", {"limit": 10})) == Forward()


def test_every_row_is_tested() -> None:
    tested = {
        "initialize",
        "thread/list",
        "thread/loaded/list",
        "thread/read",
        "thread/turns/list",
        "thread/items/list",
        "thread/resume",
        "thread/unsubscribe",
        "model/list",
    }
    assert set(OBSERVER_ALLOWLIST) == tested
    assert {"initialized"} == OBSERVER_NOTIFICATIONS


# -- everything else ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    ["turn/start", "turn/steer", "turn/interrupt", "thread/start", "command/exec", "fs/writeFile", "config/read"],
)
def test_other_requests_get_a_json_rpc_error_naming_the_role(method: str) -> None:
    verdict = check(OBSERVER, request(method, {"threadId": "t"}, request_id="abc"))
    assert isinstance(verdict, Refuse)
    assert verdict.method == method
    assert refusal(verdict) == {
        "id": "abc",
        "error": {
            "code": ROLE_FORBIDDEN,
            "message": f"{method} is not allowed for role observer",
            "data": {"role": "observer"},
        },
    }


def test_responses_to_server_requests_are_dropped() -> None:
    approval = json.dumps({"id": 0, "result": {"decision": "accept"}})
    assert check(OBSERVER, approval) == Drop("a response to a server request")
    error = json.dumps({"id": 1, "error": {"code": 1, "message": "no"}})
    assert isinstance(check(OBSERVER, error), Drop)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"text"', "{}", '{"method": "x/notify"}'])
def test_anything_else_is_dropped(text: str) -> None:
    assert isinstance(check(OBSERVER, text), Drop)


@pytest.mark.parametrize(
    "text", ["not json", '{"method": "turn/start", "id": 1}', '{"id": 0, "result": {}}', '{"method": "x/notify"}']
)
def test_full_forwards_everything_unchanged(text: str) -> None:
    assert check(Role.FULL, text) == Forward()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
methods = st.sampled_from([*OBSERVER_ALLOWLIST, *OBSERVER_NOTIFICATIONS, "turn/start", "fs/writeFile"]) | st.text(
    max_size=20
)


@settings(deadline=None)  # a shared, loaded CPU: hypothesis's 200 ms deadline would flake
@given(
    method=st.none() | methods,
    request_id=st.none() | st.integers() | st.text(max_size=5),
    has_id=st.booleans(),
    params=st.none() | json_values,
)
def test_an_observer_message_is_forwarded_only_when_the_table_allows_it(
    method: str | None, request_id: object, has_id: bool, params: object
) -> None:
    message: dict[str, object] = {}
    if method is not None:
        message["method"] = method
    if has_id:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    verdict = check(OBSERVER, json.dumps(message))
    if isinstance(verdict, Forward):
        assert isinstance(method, str)
        if has_id:
            allowed = OBSERVER_ALLOWLIST[method]
            assert allowed is None or not isinstance(params, dict) or set(params) <= allowed
        else:
            assert method in OBSERVER_NOTIFICATIONS
    elif isinstance(verdict, Refuse):
        assert has_id
        assert isinstance(method, str)
        assert json.loads(verdict.reply)["id"] == request_id
    else:
        assert isinstance(verdict, Drop)
        allowlisted_request = isinstance(method, str) and has_id and method in OBSERVER_ALLOWLIST
        assert not (allowlisted_request and not isinstance(params, dict))


def test_a_message_as_utf8_bytes_gets_the_same_verdict() -> None:
    for text in (request("thread/read", {"threadId": "t"}), request("turn/start"), '{"id": 0, "result": {}}'):
        assert check(OBSERVER, text.encode()) == check(OBSERVER, text)
        assert check(OBSERVER, bytearray(text.encode())) == check(OBSERVER, text)
