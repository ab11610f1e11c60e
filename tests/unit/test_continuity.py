"""Session continuity bookkeeping for --reconnect (proxy.continuity, proxy.pending)."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy.continuity import (
    CONNECTION_LOST,
    CONNECTION_LOST_MESSAGE,
    NOT_RESTORED,
    REPLAY_ID_PREFIX,
    Continuity,
    Phase,
    Step,
    reconnect_delay,
)
from proxy.inflight import Text
from proxy.reconnect import reconnectable
from proxy.session import id_key
from proxy.upstream_end import UpstreamEnd

JsonObject = dict[str, Any]


def text(message: JsonObject) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def parsed(texts: list[Text]) -> list[JsonObject]:
    return [json.loads(t) for t in texts]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


INITIALIZE = text({"method": "initialize", "id": 1, "params": {"clientInfo": {"name": "c", "version": "1"}}})
INITIALIZED = text({"method": "initialized"})
APPROVAL_PARAMS = {"threadId": "T1", "turnId": "U1", "itemId": "call_1", "command": "echo é"}
APPROVAL = {"method": "item/commandExecution/requestApproval", "id": 0, "params": APPROVAL_PARAMS}


def send(c: Continuity, message: JsonObject) -> Step:
    return c.client_message(text(message))


def receive(c: Continuity, message: JsonObject) -> Step:
    return c.server_message(text(message))


def session(notify: bool = False, threads: tuple[str, ...] = ("T1",)) -> tuple[Continuity, Clock]:
    """A session that initialized and started *threads* (requests 2, 3...)."""
    clock = Clock()
    c = Continuity(clock, notify=notify, rng=random.Random(7))
    assert c.client_message(INITIALIZE).to_server == [INITIALIZE]
    assert c.server_message(text({"id": 1, "result": {"userAgent": "x"}})).to_client
    assert c.client_message(INITIALIZED).to_server == [INITIALIZED]
    for number, thread in enumerate(threads, start=2):
        send(c, {"method": "thread/start", "id": number, "params": {"cwd": "/w"}})
        receive(c, {"id": number, "result": {"thread": {"id": thread}, "approvalPolicy": "never"}})
    return c, clock


def replay(c: Continuity, attempts: int = 1) -> tuple[Step, list[JsonObject]]:
    """Connect, answer the replayed initialize and every replayed thread/resume; return the last step and every
    message the replay sent to the server."""
    step = c.connected(attempts)
    sent = parsed(step.to_server)
    assert sent[0]["method"] == "initialize"
    step = receive(c, {"id": sent[0]["id"], "result": {"userAgent": "x"}})
    assert step.to_client == []
    resumes = parsed(step.to_server)
    sent += resumes
    for resume in resumes[1:] if resumes and resumes[0]["method"] == "initialized" else resumes:
        step = receive(c, {"id": resume["id"], "result": {"thread": {"id": resume["params"]["threadId"]}}})
    return step, sent


def test_replay_initializes_with_the_clients_params_then_resumes_every_thread() -> None:
    c, _ = session(threads=("T1", "T2"))
    send(c, {"method": "thread/fork", "id": 9, "params": {"threadId": "T1"}})
    receive(c, {"id": 9, "result": {"thread": {"id": "T3"}}})
    assert c.threads == ("T1", "T2", "T3")

    c.lost("EOF", 60)
    step = c.connected(3)
    (initialize,) = parsed(step.to_server)
    assert initialize["params"] == json.loads(INITIALIZE)["params"]
    assert initialize["id"] == f"{REPLAY_ID_PREFIX}1"
    assert c.phase is Phase.REPLAYING

    step = receive(c, {"id": initialize["id"], "result": {"userAgent": "x"}})
    sent = parsed(step.to_server)
    assert sent[0] == {"method": "initialized"}
    assert [(m["method"], m["params"]) for m in sent[1:]] == [
        ("thread/resume", {"threadId": thread, "excludeTurns": True}) for thread in ("T1", "T2", "T3")
    ]
    assert len({m["id"] for m in sent[1:]}) == 3
    assert all(m["id"].startswith(REPLAY_ID_PREFIX) for m in sent[1:])
    assert step.to_client == [] and not step.restored

    for resume in sent[1:]:
        step = receive(c, {"id": resume["id"], "result": {"thread": {"id": resume["params"]["threadId"]}}})
        assert step.to_client == []  # replay responses never reach the client
    assert step.restored and not c.holding


def test_requests_in_flight_get_errors_in_order_and_are_never_sent_again() -> None:
    c, _ = session()
    send(c, {"method": "turn/start", "id": "a", "params": {"threadId": "T1"}})
    send(c, {"method": "thread/list", "id": 7, "params": {}})
    send(c, {"method": "thread/read", "id": "a", "params": {}})  # the same id twice: both are owed an answer
    receive(c, {"id": 7, "result": {}})

    step = c.lost("EOF", 60)
    assert parsed(step.to_client) == [
        {"id": "a", "error": {"code": CONNECTION_LOST, "message": CONNECTION_LOST_MESSAGE, "data": {"method": m}}}
        for m in ("turn/start", "thread/read")
    ]
    assert step.to_server == []
    _, sent = replay(c)
    assert all(m.get("method") != "turn/start" for m in sent)
    assert c.in_flight == 0


def test_client_messages_are_held_while_reconnecting_and_sent_in_order_after_the_replay() -> None:
    c, _ = session()
    c.lost("EOF", 60)
    held = [text({"method": "turn/start", "id": n, "params": {"threadId": "T1"}}) for n in range(10, 13)]
    for message in held:
        assert c.client_message(message) == Step()
    assert c.holding and c.held_bytes == sum(len(m) for m in held)

    step = c.connected(1)
    assert c.client_message(text({"method": "thread/list", "id": 13})).to_server == []  # still held: replaying
    step = receive(c, {"id": parsed(step.to_server)[0]["id"], "result": {}})
    (resume,) = parsed(step.to_server)[1:]
    step = receive(c, {"id": resume["id"], "result": {"thread": {"id": "T1"}}})

    assert step.restored
    assert step.to_server == [] and step.held == [*held, text({"method": "thread/list", "id": 13})]
    assert c.held_bytes == 0 and not c.holding
    assert c.in_flight == 4  # the held requests are tracked once sent


def test_a_client_that_never_initialized_gets_no_replay() -> None:
    c = Continuity(Clock())
    send(c, {"method": "thread/list", "id": 1})  # before initialize: Codex answers "Not initialized"
    c.lost("EOF", 60)
    c.client_message(INITIALIZE)
    step = c.connected(1)
    assert step.restored
    assert step.held == [INITIALIZE]


def test_an_initialize_in_flight_at_the_loss_is_answered_with_an_error_and_not_replayed() -> None:
    c = Continuity(Clock())
    c.client_message(INITIALIZE)
    step = c.lost("EOF", 60)
    assert parsed(step.to_client)[0]["error"]["code"] == CONNECTION_LOST
    assert c.connected(1).to_server == []


def test_an_initialize_answered_with_an_error_is_not_replayed() -> None:
    c = Continuity(Clock())
    c.client_message(INITIALIZE)
    receive(c, {"id": 1, "error": {"code": -32600, "message": "bad"}})
    c.lost("EOF", 60)
    assert c.connected(1).restored


def test_a_refused_replayed_initialize_fails_the_restore() -> None:
    c, _ = session()
    c.lost("EOF", 60)
    step = c.connected(1)
    step = receive(c, {"id": parsed(step.to_server)[0]["id"], "error": {"code": -32600, "message": "nope"}})
    assert step.failed is not None and "-32600 nope" in step.failed
    assert step.to_client == []


def test_a_closing_thread_is_resumed_again_after_a_backoff() -> None:
    c, _ = session(threads=("T1", "T2"))
    c.lost("EOF", 60)
    step = c.connected(1)
    step = receive(c, {"id": parsed(step.to_server)[0]["id"], "result": {}})
    first, second = parsed(step.to_server)[1:]
    closing = {"code": -32600, "message": "thread T1 is closing; retry thread/resume after the thread is closed"}
    step = receive(c, {"id": first["id"], "error": closing})
    assert step.retry_after is not None and 0.05 <= step.retry_after <= 0.1
    step = receive(c, {"id": second["id"], "result": {"thread": {"id": "T2"}}})
    assert not step.restored  # T1 is still to come

    step = c.retry_resumes()
    (again,) = parsed(step.to_server)
    assert again["params"]["threadId"] == "T1" and again["id"] != first["id"]
    step = receive(c, {"id": again["id"], "result": {"thread": {"id": "T1"}}})
    assert step.restored
    assert c.threads == ("T1", "T2")


def test_a_thread_that_cannot_be_resumed_is_dropped_and_reported() -> None:
    c, clock = session(notify=True, threads=("T0", "T1"))
    clock.now = 100.0
    step = c.lost("the app-server closed the socket", 60)
    (note,) = parsed(step.to_client)
    assert note == {
        "method": "proxy/reconnecting",
        "params": {"reason": "the app-server closed the socket", "timeoutMs": 60000, "unansweredRequests": 0},
    }
    clock.now = 102.5
    step = c.connected(4)
    step = receive(c, {"id": parsed(step.to_server)[0]["id"], "result": {}})
    t0, t1 = parsed(step.to_server)[1:]
    no_rollout = {"code": -32600, "message": "no rollout found for thread id T0"}
    assert receive(c, {"id": t0["id"], "error": no_rollout}).to_client == []
    step = receive(c, {"id": t1["id"], "result": {"thread": {"id": "T1"}}})
    (note,) = parsed(step.to_client)
    assert note == {
        "method": "proxy/reconnected",
        "params": {
            "attempts": 4,
            "durationMs": 2500,
            "resumedThreads": ["T1"],
            "droppedThreads": [{"threadId": "T0", "error": "-32600 no rollout found for thread id T0"}],
            "notRestored": list(NOT_RESTORED),
        },
    }
    assert c.threads == ("T1",)


def test_no_proxy_notifications_without_notify() -> None:
    c, _ = session(notify=False)
    assert c.lost("EOF", 60).to_client == []
    step, _ = replay(c)
    assert step.to_client == []
    assert c.gave_up("x", 3).to_client == []


def test_gave_up_notification() -> None:
    c, clock = session(notify=True)
    c.lost("EOF", 1)
    clock.now += 1.25
    (note,) = parsed(c.gave_up("no app-server is listening", 5).to_client)
    assert note == {
        "method": "proxy/reconnectFailed",
        "params": {"reason": "no app-server is listening", "attempts": 5, "durationMs": 1250},
    }


def test_a_second_loss_during_the_replay_keeps_the_outage_and_forgets_the_replay() -> None:
    c, clock = session(notify=True)
    c.lost("EOF", 60)
    step = c.connected(1)
    replay_id = parsed(step.to_server)[0]["id"]
    assert parsed(c.lost("EOF again", 60).to_client) == []  # one outage: one proxy/reconnecting
    clock.now += 3
    step, _ = replay(c, attempts=2)
    assert step.restored
    note = parsed(step.to_client)[0]
    assert note["params"]["attempts"] == 2 and note["params"]["durationMs"] == 3000
    # a late answer to the first connection's replay id is a plain message by now (nothing owes it)
    assert receive(c, {"id": replay_id, "result": {}}).to_client == [text({"id": replay_id, "result": {}})]


def test_client_ids_that_look_like_replay_ids_are_the_clients_own() -> None:
    c, _ = session()
    own = {"method": "thread/list", "id": f"{REPLAY_ID_PREFIX}1"}
    assert send(c, own).to_server == [text(own)]
    answer = {"id": f"{REPLAY_ID_PREFIX}1", "result": {"data": []}}
    assert receive(c, answer).to_client == [text(answer)]
    c.lost("EOF", 60)
    c.client_message(text(own))  # held: sent only once the replay (whose first id is the same string) is over
    step = c.connected(1)
    assert parsed(step.to_server)[0]["id"] == f"{REPLAY_ID_PREFIX}1"
    step = receive(c, {"id": f"{REPLAY_ID_PREFIX}1", "result": {}})
    assert step.to_client == []
    (resume,) = parsed(step.to_server)[1:]
    step = receive(c, {"id": resume["id"], "result": {"thread": {"id": "T1"}}})
    assert step.held == [text(own)]
    assert receive(c, answer).to_client == [text(answer)]


def test_unsubscribed_archived_and_deleted_threads_are_not_resumed() -> None:
    c, _ = session(threads=("T1", "T2", "T3", "T4"))
    for number, (method, thread) in enumerate(
        [("thread/unsubscribe", "T1"), ("thread/archive", "T2"), ("thread/delete", "T3")], start=20
    ):
        send(c, {"method": method, "id": number, "params": {"threadId": thread}})
        receive(c, {"id": number, "result": {}})
    send(c, {"method": "thread/unsubscribe", "id": 30, "params": {"threadId": "T4"}})
    receive(c, {"id": 30, "error": {"code": -32600, "message": "no"}})
    assert c.threads == ("T4",)


def test_overloaded_request_resent_through_the_layer_is_tracked_again() -> None:
    c, _ = session()
    request = {"method": "thread/list", "id": 5}
    send(c, request)
    receive(c, {"id": 5, "error": {"code": -32001, "message": "Server overloaded; retry later."}})
    assert c.in_flight == 0
    send(c, request)  # the overload retry goes through client_message again
    assert parsed(c.lost("EOF", 60).to_client)[0]["id"] == 5


# -- server requests: exactly once -----------------------------------------------------------------------


def test_a_resent_approval_the_client_saw_is_not_delivered_again_and_its_later_answer_goes_through() -> None:
    c, _ = session()
    assert receive(c, APPROVAL).to_client == [text(APPROVAL)]
    c.lost("EOF", 60)
    step = c.connected(1)
    step = receive(c, {"id": parsed(step.to_server)[0]["id"], "result": {}})
    (resume,) = parsed(step.to_server)[1:]
    step = receive(c, {"id": resume["id"], "result": {"thread": {"id": "T1"}}})
    assert step.restored
    # measured on 0.169.0: the re-sent request follows the thread/resume response, same id, same params
    assert receive(c, APPROVAL) == Step()
    answer = {"id": 0, "result": {"decision": "accept"}}
    assert send(c, answer).to_server == [text(answer)]


def test_an_answer_given_while_reconnecting_is_sent_when_the_request_is_re_sent() -> None:
    c, _ = session()
    receive(c, APPROVAL)
    c.lost("EOF", 60)
    answer = {"id": 0, "result": {"decision": "accept"}}
    send(c, answer)  # held
    step, _ = replay(c)
    assert step.restored
    assert text(answer) not in step.to_server + step.held  # parked: the request may belong to a server that is gone
    step = receive(c, APPROVAL)
    assert step.to_client == [] and step.to_server == [text(answer)]


def test_a_re_sent_request_under_another_id_is_answered_under_that_id() -> None:
    c, _ = session()
    receive(c, APPROVAL)
    c.lost("EOF", 60)
    replay(c)
    assert receive(c, {**APPROVAL, "id": 4}) == Step()
    sent = send(c, {"id": 0, "result": {"decision": "decline"}}).to_server
    assert parsed(sent) == [{"id": 4, "result": {"decision": "decline"}}]


def test_an_answer_sent_before_the_drop_is_sent_again_when_the_server_re_sends_the_request() -> None:
    c, _ = session()
    receive(c, APPROVAL)
    answer = {"id": 0, "result": {"decision": "accept"}}
    assert send(c, answer).to_server == [text(answer)]
    c.lost("EOF", 60)  # before serverRequest/resolved: the server may not have had it
    replay(c)
    assert receive(c, APPROVAL) == Step(to_server=[text(answer)])


def test_a_resolved_request_is_forgotten() -> None:
    c, _ = session()
    receive(c, APPROVAL)
    send(c, {"id": 0, "result": {"decision": "accept"}})
    receive(c, {"method": "serverRequest/resolved", "params": {"threadId": "T1", "requestId": 0}})
    c.lost("EOF", 60)
    replay(c)
    assert receive(c, APPROVAL).to_client == [text(APPROVAL)]  # the same content again is a new request


def test_a_restarted_servers_new_request_with_a_reused_id_is_delivered() -> None:
    c, _ = session()
    receive(c, APPROVAL)
    c.lost("EOF", 60)
    stale = {"id": 0, "result": {"decision": "accept"}}
    send(c, stale)  # answers the lost request, held
    step, _ = replay(c)
    assert text(stale) not in step.to_server + step.held  # never given to the new server's request 0
    new_turn = {**APPROVAL, "params": {**APPROVAL_PARAMS, "turnId": "U2"}}
    assert receive(c, new_turn).to_client == [text(new_turn)]
    answer = {"id": 0, "result": {"decision": "decline"}}
    assert send(c, answer).to_server == [text(answer)]


def test_a_request_delivered_on_the_same_connection_twice_is_delivered_twice() -> None:
    c, _ = session()
    assert receive(c, APPROVAL).to_client == [text(APPROVAL)]
    assert receive(c, APPROVAL).to_client == [text(APPROVAL)]  # only a later connection's copy is a re-send


def test_reconnect_delay_is_capped_exponential_with_jitter() -> None:
    rng = random.Random(1)
    for attempt in range(1, 30):
        base = min(5.0, 0.1 * 2 ** (attempt - 1))
        assert base / 2 <= reconnect_delay(attempt, rng) <= base


# -- properties --------------------------------------------------------------------------------------------

REQUEST_IDS = st.one_of(st.integers(0, 3), st.sampled_from(["a", "1", f"{REPLAY_ID_PREFIX}1", f"{REPLAY_ID_PREFIX}2"]))
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), REQUEST_IDS, st.sampled_from(["turn/start", "thread/start", "thread/list"])),
        st.tuples(st.just("answer"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("server_request"), st.just(0), st.booleans()),
        st.tuples(st.just("client_answer"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("read_answers"), st.just(0), st.booleans()),
        st.tuples(st.just("lose"), st.just(0), st.booleans()),
        st.tuples(st.just("connect"), st.just(0), st.booleans()),
    ),
    max_size=60,
)


class Model:
    """A client and an app-server around one :class:`Continuity`.

    The server answers the replay at once (a ``thread/resume`` "is closing" as long as *closing* says so, the
    retry following at once) and, like Codex after ``thread/resume``, re-sends its pending requests (same id, same
    params) on each new connection once the replay is over.
    """

    def __init__(self, closing: list[bool] | None = None) -> None:
        self.c = Continuity(Clock(), notify=True, rng=random.Random(0))
        self.closing = list(closing or [])
        self.connected = True
        self.server_in_flight: list[JsonObject] = []  # the client's requests the server has, on this connection
        self.sent_requests: list[str] = []  # every client request that reached a server, as text
        self.owed: Counter[tuple[str, object]] = Counter()  # responses the client waits for
        self.pending: dict[int, JsonObject] = {}  # the server's own requests, unanswered, by id
        self.seen: list[JsonObject] = []  # server requests delivered to the client
        self.client_answered: set[object] = set()
        self.inbox: list[JsonObject] = []  # client answers on their way to the server
        self.number = 0
        self.client_texts: set[str] = set()  # every request the client wrote
        self.event("request", "init", "initialize")  # an initialized session: a reconnect replays it
        self.event("answer", 0, False)

    def run(self, step: Step) -> None:
        assert step.failed is None
        for message in parsed(step.to_client):
            if "method" in message:
                if "id" in message:
                    assert message not in self.seen, f"a server request reached the client twice: {message}"
                    self.seen.append(message)
                continue
            assert not message.get("replay") and not message.get("result", {}).get("replay"), "a replay response"
            key = id_key(message["id"])
            assert key is not None and self.owed[key] > 0, f"a response nobody waits for: {message}"
            self.owed[key] -= 1
        for message_text in step.to_server + step.held:
            assert self.connected
            self.server_receives(message_text)
        if step.retry_after is not None:
            self.run(self.c.retry_resumes())
        if step.restored:
            for request in list(self.pending.values()):
                self.run(receive(self.c, request))

    def server_receives(self, message_text: Text) -> None:
        message = json.loads(message_text)
        if "method" not in message:
            self.inbox.append(message)  # an answer to one of the server's requests: read later, or lost
            return
        if "id" not in message:
            return
        if message_text not in self.client_texts:  # the proxy's own: the replay
            if message["method"] == "thread/resume" and self.closing and self.closing.pop(0):
                error = {
                    "code": -32600,
                    "message": "thread T is closing; retry thread/resume after the thread is closed",
                }
                self.run(self.c.server_message(text({"id": message["id"], "error": error, "replay": True})))
                return
            result = {"replay": True, "thread": {"id": message.get("params", {}).get("threadId")}}
            self.run(self.c.server_message(text({"id": message["id"], "result": result})))
            return
        assert message_text not in self.sent_requests, "a client request was sent twice"
        self.sent_requests.append(message_text)
        self.server_in_flight.append(message)

    def event(self, kind: str, value: Any, extra: Any) -> None:
        if kind == "request":
            self.number += 1
            self.owed[id_key(value)] += 1  # type: ignore[index]
            message = {"method": extra, "id": value, "seq": self.number, "params": {}}
            self.client_texts.add(text(message))
            self.run(send(self.c, message))
        elif kind == "answer" and self.connected and self.server_in_flight:
            request = self.server_in_flight.pop(value % len(self.server_in_flight))
            result: JsonObject = {"thread": {"id": f"T{request['seq']}"}} if extra else {}
            self.run(receive(self.c, {"id": request["id"], "result": result}))
        elif kind == "server_request" and self.connected and self.c.phase is Phase.CONNECTED:
            self.number += 1
            request = {"method": "item/tool/requestUserInput", "id": self.number, "params": {"n": self.number}}
            self.pending[self.number] = request
            self.run(receive(self.c, request))
        elif kind == "client_answer" and self.seen:
            request = self.seen[value % len(self.seen)]
            if request["id"] not in self.client_answered:  # a client answers each request once
                self.client_answered.add(request["id"])
                self.run(send(self.c, {"id": request["id"], "result": {"ok": extra}}))
        elif kind == "read_answers" and self.connected:
            for answer in self.inbox:
                self.pending.pop(answer["id"], None)
            self.inbox.clear()
        elif kind == "lose" and self.connected:
            self.connected = False
            self.server_in_flight.clear()
            self.inbox.clear()
            self.run(self.c.lost("EOF", 60))
        elif kind == "connect" and not self.connected:
            self.connect()

    def connect(self) -> None:
        self.connected = True
        self.run(self.c.connected(1))


@given(EVENTS, st.lists(st.booleans(), max_size=8))
@example(  # a thread, a server request seen and answered, a drop, a closing thread: every path at once
    [
        ("request", 1, "thread/start"),
        ("answer", 0, True),
        ("server_request", 0, False),
        ("client_answer", 0, True),
        ("lose", 0, False),
        ("request", 2, "turn/start"),
        ("connect", 0, False),
    ],
    [True, True],
)
@settings(max_examples=300, deadline=None)
def test_requests_answered_once_sent_at_most_once_server_requests_delivered_once(
    events: list[tuple[str, Any, Any]], closing: list[bool]
) -> None:
    model = Model(closing)
    for kind, value, extra in events:
        model.event(kind, value, extra)
    # The end: reconnect if need be, the server answers everything it has, the client every request it saw.
    if not model.connected:
        model.connect()
    assert model.c.phase is Phase.CONNECTED  # the replay completes (the server answered it at once)
    while model.server_in_flight:
        model.event("answer", 0, False)
    assert +model.owed == Counter(), "a client request was never answered"
    assert model.c.held_bytes == 0
    for index in range(len(model.seen)):
        model.event("client_answer", index, True)
    model.event("read_answers", 0, False)
    assert model.pending == {}, "a server request the client answered never got its answer"


def test_the_initialize_that_succeeded_is_the_one_replayed() -> None:
    c = Continuity(Clock())
    first = {"method": "initialize", "id": "a", "params": {"clientInfo": {"name": "first", "version": "1"}}}
    second = {"method": "initialize", "id": "b", "params": {"clientInfo": {"name": "second", "version": "1"}}}
    send(c, first)
    send(c, second)
    receive(c, {"id": "a", "result": {}})
    receive(c, {"id": "b", "error": {"code": -32600, "message": "Already initialized"}})
    c.lost("EOF", 60)
    (replayed,) = parsed(c.connected(1).to_server)
    assert replayed["params"] == first["params"]


def test_which_endings_are_reconnected() -> None:
    def end(kind: str, code: int | None = None) -> UpstreamEnd:
        return UpstreamEnd(1, "x", None, kind, code)

    assert reconnectable(end("lost")) and reconnectable(end("keepalive"))
    assert reconnectable(end("closed", 1012)) and reconnectable(end("closed", 1001))
    assert not reconnectable(end("closed", 1000)) and not reconnectable(end("closed", 1011))
    assert not reconnectable(end("protocol")) and not reconnectable(end("too-big"))


def test_utf8_bytes_pass_through_unchanged() -> None:
    """The relay hands over messages as UTF-8 bytes on its hot paths: they pass as the same objects."""
    c, _ = session()
    request = bytearray(b'{"method":"thread/list","id":7,"params":{"q":"caf\xc3\xa9"}}')
    step = c.client_message(request)
    assert step.to_server == [request] and step.to_server[0] is request
    delta = b'{"method":"item/agentMessage/delta","params":{"delta":"\xe2\x80\xa8"}}'
    assert c.server_message(delta).to_client[0] is delta
    answer = b'{"id":7,"result":{"data":[]}}'
    assert c.server_message(answer).to_client == [answer]
    assert c.in_flight == 0
    approval = text(APPROVAL).encode()
    assert c.server_message(approval).to_client == [approval]
    c.lost("EOF", 60)
    c.client_message(b'{"id":0,"result":{"decision":"accept"}}')
    assert c.held_bytes == len(b'{"id":0,"result":{"decision":"accept"}}')
    replay(c)
    assert parsed(c.server_message(approval).to_server) == [{"id": 0, "result": {"decision": "accept"}}]
