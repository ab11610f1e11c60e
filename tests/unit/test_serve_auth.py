"""The bridge's token rules: constant-time digests, where the token may travel, the per-address rate limiter."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.serve.auth import (
    BEARER_SUBPROTOCOL_PREFIX,
    FAILURE_WINDOW,
    MAX_FAILURES,
    RateLimiter,
    Token,
    TokenTooShort,
    authorized,
    bearer_from_authorization,
    parse_subprotocols,
    split_header_list,
)

SECRET = secrets.token_urlsafe(32).encode()


def test_a_token_needs_32_bytes() -> None:
    with pytest.raises(TokenTooShort):
        Token(b"x" * 31)
    assert Token(b"x" * 32).matches(b"x" * 32)


def test_the_token_never_shows_in_its_repr() -> None:
    assert SECRET.decode() not in repr(Token(SECRET))


@given(st.binary(max_size=80))
def test_only_the_token_itself_matches(candidate: bytes) -> None:
    token = Token(SECRET)
    assert token.matches(candidate) == (candidate == SECRET)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([b"Bearer abc"], b"abc"),
        ([b"bearer  abc "], b"abc"),
        ([b"BEARER abc"], b"abc"),
        ([b"Basic abc"], None),
        ([b"Bearer"], None),
        ([b"Bearer "], None),
        ([], None),
        ([b"Bearer a", b"Bearer b"], None),  # two Authorization headers: ambiguous, refused
    ],
)
def test_bearer_from_authorization(values: list[bytes], expected: bytes | None) -> None:
    assert bearer_from_authorization(values) == expected


def test_header_lists_join_every_field_and_drop_empty_entries() -> None:
    assert split_header_list([b"a, b", b" ,c,,", b"d\xff"]) == ["a", "b", "c"]


def test_subprotocol_bearer_entries_are_tokens_never_protocols() -> None:
    offer = parse_subprotocols([f"{BEARER_SUBPROTOCOL_PREFIX}{SECRET.decode()}, codex-appserver.v1".encode()])
    assert offer.tokens == (SECRET,)
    assert offer.protocols == ("codex-appserver.v1",)
    assert offer.select() == "codex-appserver.v1"


def test_only_a_known_protocol_is_selected() -> None:
    offer = parse_subprotocols([b"chat, codex-appserver.bearer.xyz"])
    assert offer.select() is None
    assert offer.select(["chat"]) == "chat"
    assert parse_subprotocols([b"codex-appserver.bearer."]).tokens == ()


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=60))
def test_the_selected_protocol_never_carries_a_token(name: str) -> None:
    offer = parse_subprotocols([f"{BEARER_SUBPROTOCOL_PREFIX}{name}, {name}".encode()])
    selected = offer.select([name, f"{BEARER_SUBPROTOCOL_PREFIX}{name}"])
    assert selected is None or not selected.startswith(BEARER_SUBPROTOCOL_PREFIX)


def test_authorized_by_header_or_subprotocol() -> None:
    token = Token(SECRET)
    none = parse_subprotocols([])
    assert authorized(None, [], none)
    assert not authorized(token, [], none)
    assert authorized(token, [b"Bearer " + SECRET], none)
    assert not authorized(token, [b"Bearer " + SECRET[:-1]], none)
    assert authorized(token, [], parse_subprotocols([BEARER_SUBPROTOCOL_PREFIX.encode() + SECRET]))
    assert authorized(token, [b"Bearer wrong"], parse_subprotocols([BEARER_SUBPROTOCOL_PREFIX.encode() + SECRET]))


def test_the_eleventh_attempt_within_a_minute_is_limited_until_the_minute_ends() -> None:
    limiter = RateLimiter()
    for i in range(MAX_FAILURES):
        assert not limiter.limited("10.0.0.1", float(i))
        limiter.failed("10.0.0.1", float(i))
    assert limiter.limited("10.0.0.1", 10.0)
    assert limiter.retry_after("10.0.0.1", 10.0) == 50
    assert not limiter.limited("10.0.0.2", 10.0)  # per address
    assert limiter.limited("10.0.0.1", FAILURE_WINDOW - 0.001)
    assert not limiter.limited("10.0.0.1", FAILURE_WINDOW)  # the first failure is a minute old
    assert limiter.retry_after("10.0.0.1", FAILURE_WINDOW) == 0


def test_failures_spread_over_more_than_a_minute_never_limit() -> None:
    limiter = RateLimiter()
    for i in range(100):
        now = i * 7.0
        assert not limiter.limited("a", now)
        limiter.failed("a", now)


def test_the_limiter_remembers_a_bounded_number_of_addresses() -> None:
    limiter = RateLimiter(max_failures=1, max_addresses=3)
    for address in ("a", "b", "c", "d"):
        limiter.failed(address, 0.0)
    assert not limiter.limited("a", 0.0)  # forgotten: the oldest goes first
    assert all(limiter.limited(address, 0.0) for address in ("b", "c", "d"))


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 1000)), max_size=60))
def test_limited_means_ten_failures_in_the_last_minute(events: list[tuple[str, float]]) -> None:
    limiter = RateLimiter()
    history: dict[str, list[float]] = {}
    now = 0.0
    for address, step in events:
        now += step / 50
        recent = [t for t in history.get(address, []) if t > now - FAILURE_WINDOW]
        assert limiter.limited(address, now) == (len(recent) >= MAX_FAILURES)
        if not limiter.limited(address, now):
            limiter.failed(address, now)
            history.setdefault(address, []).append(now)
