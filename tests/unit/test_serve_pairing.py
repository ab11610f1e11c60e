"""The pairing URI, join codes and the JoinBook (proxy/serve/pairing.py)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.serve.pairing import (
    PAIR_ATTEMPTS_PER_MINUTE,
    JoinBook,
    JoinOffer,
    PairingInfo,
    code_digest,
    new_join_code,
    normalize_code,
    pairing_uri,
    parse_pair_body,
    parse_pairing_uri,
)

TOKEN = "v-dqtfmyKwpSwDb_GG6jRkrIk2fJKQ83oxhEHLJEfrs"
DIGEST = "f4d838c9a432a48015198fad88123e36e92606a8a1023d97d69c2fc266b358a6"


def test_the_uri_format_is_exactly_as_documented() -> None:
    uri = pairing_uri(PairingInfo("wss://192.168.1.20:9100/ws", TOKEN, DIGEST, "phone"))
    assert uri == (
        f"codex-appserver-pair:v1?url=wss%3A%2F%2F192.168.1.20%3A9100%2Fws&token={TOKEN}&sha256={DIGEST}&name=phone"
    )


def test_the_fingerprint_is_left_out_for_plain_ws() -> None:
    uri = pairing_uri(PairingInfo("ws://[::1]:9100/ws", TOKEN, None, "a.b_c-d"))
    assert uri == f"codex-appserver-pair:v1?url=ws%3A%2F%2F%5B%3A%3A1%5D%3A9100%2Fws&token={TOKEN}&name=a.b_c-d"
    assert parse_pairing_uri(uri) == PairingInfo("ws://[::1]:9100/ws", TOKEN, None, "a.b_c-d")


@settings(deadline=None)  # a shared, loaded CPU: hypothesis's 200 ms deadline would flake
@given(
    url=st.text(min_size=1, max_size=80),
    token=st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=43, max_size=43),
    digest=st.one_of(st.none(), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
    name=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z"),
)
def test_parse_inverts_build(url: str, token: str, digest: str | None, name: str) -> None:
    info = PairingInfo(url, token, digest, name)
    assert parse_pairing_uri(pairing_uri(info)) == info


@pytest.mark.parametrize(
    "uri",
    [
        "codex-appserver-pair:v2?url=x&token=y&name=z",
        "https://example/?url=x&token=y&name=z",
        "codex-appserver-pair:v1?url=x&name=z",
        "codex-appserver-pair:v1?url=x&url=x&token=y&name=z",
        "codex-appserver-pair:v1?url=x&token=y&sha256=ABC&name=z",
    ],
)
def test_bad_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_pairing_uri(uri)


def test_join_codes_are_two_groups_of_four_crockford_characters() -> None:
    codes = {new_join_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert len(code) == 9
        assert code[4] == "-"
        assert set(code.replace("-", "")) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_codes_compare_case_dash_and_look_alike_insensitively() -> None:
    assert normalize_code("ab1o-0il9") == "AB100119"
    assert code_digest("AB10-0119") == code_digest("ab1o 0il9")
    assert code_digest("AB10-0119") != code_digest("AB10-0118")


def test_pair_bodies() -> None:
    assert parse_pair_body(b'{"code": "AB10-0119"}') == "AB10-0119"
    for bad in (b"", b"AB10", b"[]", b'{"code": 5}', b'{"code": ""}', b'{"code": "' + b"x" * 65 + b'"}'):
        assert parse_pair_body(bad) is None


def test_a_code_is_single_use_and_expires() -> None:
    book = JoinBook()
    offer = JoinOffer("phone", "full", code_digest("AAAA-BBBB"), expires=100.0)
    book.offer(offer)
    assert book.take("AAAA-BBBC", 1.0) is None
    assert book.take("aaaa-bbbb", 1.0) is offer
    assert book.take("AAAA-BBBB", 2.0) is None  # spent, whatever the answer was
    late = JoinOffer("tablet", "observer", code_digest("CCCC-DDDD"), expires=100.0)
    book.offer(late)
    assert book.take("CCCC-DDDD", 100.0) is None
    book.withdraw(late)
    assert book.offers == [offer]


def test_pairing_requests_are_limited_to_ten_a_minute_per_address() -> None:
    book = JoinBook()
    assert [book.limited("10.0.0.2", 0.0 + i) for i in range(PAIR_ATTEMPTS_PER_MINUTE)] == [False] * 10
    assert book.limited("10.0.0.2", 10.0)
    assert not book.limited("10.0.0.3", 10.0)
    assert book.retry_after("10.0.0.2", 10.0) == 50
    assert not book.limited("10.0.0.2", 60.5)
