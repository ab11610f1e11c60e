"""Option values a hostile or careless caller may pass: each one is a usage error (2), never a hang or a traceback."""

from __future__ import annotations

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.cli import main
from proxy.errors import ExitStatus, ProxyError
from proxy.handshake import ClientHandshake
from proxy.target import remote_target

FLOAT_OPTIONS = ["--wait", "--connect-timeout", "--drain-timeout", "--ping-interval", "--ping-timeout"]
NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "+inf", "1e999"]


def parse(*args: str) -> click.Context:
    """Parse the proxy command's options only (nothing runs)."""
    command = main.all_commands()["proxy"]
    return command.make_context("proxy", list(args))


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_non_finite_seconds_are_usage_errors(option: str, value: str) -> None:
    """issue 9 #4: ``--wait nan`` waited forever, ``--connect-timeout nan`` ended in a ValueError traceback."""
    with pytest.raises(click.BadParameter) as caught:
        parse(option, value)
    assert caught.value.exit_code == 2
    assert caught.value.param is not None and option in caught.value.param.opts


@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_finite_seconds_still_parse(option: str) -> None:
    assert parse(option, "2.5").params[option.lstrip("-").replace("-", "_")] == 2.5


# -- #8: --remote URLs with spaces, control characters, non-ASCII, port 0 -----------------------------------


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("ws://127.0.0.1:4500/a b", "/a%20b"),
        ("ws://127.0.0.1:4500/é?q=é x", "/%C3%A9?q=%C3%A9%20x"),
        ("ws://127.0.0.1:4500/%41%zz", "/%41%25zz"),  # a valid escape kept, a lone % encoded
        ("ws://127.0.0.1:4500/p?a=1&b=[x]", "/p?a=1&b=%5Bx%5D"),
    ],
)
def test_remote_path_and_query_are_percent_encoded(url: str, resource: str) -> None:
    assert remote_target(url, None, {}).resource == resource


@pytest.mark.parametrize(
    "url",
    [
        "ws://h:1/a\tb",
        "ws://h:1/a\nb",
        "ws://h:1/?q=\x01",
        "ws://h:1/\x7f",
        "ws://h:0/",
        "ws://127.0.0.1:0",
        "ws://a b:1/",
    ],
)
def test_remote_control_characters_port_0_and_bad_hosts_are_usage_errors(url: str) -> None:
    with pytest.raises(ProxyError) as caught:
        remote_target(url, None, {})
    assert caught.value.status == ExitStatus.USAGE


@settings(max_examples=500, deadline=None)
@given(path=st.text(max_size=40), query=st.text(max_size=40))
def test_any_remote_url_is_a_usage_error_or_a_valid_request(path: str, query: str) -> None:
    """issue 9 #8: a space or control character gave an h11 LocalProtocolError traceback, ``é`` a
    UnicodeEncodeError. Any path and query now either make a request h11 sends, or a usage error."""
    url = f"ws://127.0.0.1:4500/{path}" + (f"?{query}" if query else "")
    try:
        target = remote_target(url, None, {})
    except ProxyError as exc:
        status = exc.status
    else:
        status = ExitStatus.OK
    if status != ExitStatus.OK:
        assert status == ExitStatus.USAGE
        return
    request = ClientHandshake(host=target.host_header, target=target.resource).request_bytes()
    assert request.startswith(b"GET /")
    assert target.resource.isascii() and " " not in target.resource
