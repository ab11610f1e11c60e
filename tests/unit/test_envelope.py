"""proxy.envelope: the strict parse both entry points share, against the json module as the reference."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.envelope import NOT_AN_OBJECT, Envelope, envelope_of, read_envelope
from proxy.linecheck import check_line

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
)


@given(values)
def test_any_json_value_gives_the_same_envelope_everywhere(value: object) -> None:
    data = json.dumps(value).encode()
    envelope = envelope_of(data)
    assert envelope.is_object == isinstance(value, dict)
    assert read_envelope(data) == envelope
    assert check_line(data) == envelope
    if isinstance(value, dict):
        assert envelope.has_id == ("id" in value)
        assert envelope.has_method == ("method" in value)


@pytest.mark.parametrize("data", [b"", b"{", b'{"id":1,}', b"[1 2]", b"NaN", b'{"id":1}x'])
def test_invalid_json_raises_decode_error_and_reads_as_none(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        envelope_of(data)
    assert read_envelope(data) is None
    assert isinstance(check_line(data), str)


def test_valid_values_that_are_not_objects() -> None:
    for data in (b"[]", b"1", b'"x"', b"null", b"[[],[{}]]"):
        assert envelope_of(data) is NOT_AN_OBJECT


def test_envelope_members() -> None:
    assert envelope_of(b'{"id":"a","method":"m","error":{"code":-32001}}') == Envelope(
        is_object=True, has_id=True, id="a", id_json='"a"', has_method=True, method="m", error_code=-32001
    )


def test_too_deep_for_msgspec_raises_recursion_error_but_reads() -> None:
    deep = b'{"id":7,"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(RecursionError):
        envelope_of(deep)
    envelope = read_envelope(deep)
    assert envelope is not None and envelope.id == 7
    assert check_line(deep) == "nested more than 127 levels deep (Codex's limit)"
