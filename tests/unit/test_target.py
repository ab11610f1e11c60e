"""Which app-server: socket paths and remote URLs, with the token rules (proxy.target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.errors import ExitStatus, ProxyError
from proxy.target import RemoteTarget, connect_path, default_socket_path, is_loopback, remote_target, socket_path

SOCK = Path("app-server-control/app-server-control.sock")


def test_default_socket_follows_codex_home() -> None:
    assert default_socket_path({"CODEX_HOME": "/srv/codex"}) == Path("/srv/codex") / SOCK
    assert default_socket_path({}) == Path("~/.codex").expanduser() / SOCK
    assert default_socket_path({"CODEX_HOME": ""}) == Path("~/.codex").expanduser() / SOCK


def test_sock_option_expands_home_and_resolves_relative_paths() -> None:
    assert socket_path("~/s.sock", {}, Path("/cwd")) == Path("~/s.sock").expanduser()
    assert socket_path("rel/s.sock", {}, Path("/cwd")) == Path("/cwd/rel/s.sock")
    assert socket_path(None, {"CODEX_HOME": "h"}, Path("/cwd")) == Path("/cwd/h") / SOCK


def test_connect_path_takes_the_shorter_resolved_link(tmp_path: Path) -> None:
    target = tmp_path / "t.sock"
    target.touch()
    deep = tmp_path / ("d" * 80) / ("e" * 80)
    deep.mkdir(parents=True)
    (deep / "link.sock").symlink_to(target)
    assert connect_path(deep / "link.sock") == str(target)
    assert connect_path(tmp_path / "missing.sock") == str(tmp_path / "missing.sock")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:4500", ("ws", "127.0.0.1", 4500, "/", "127.0.0.1:4500")),
        ("wss://devbox.example/codex?x=1", ("wss", "devbox.example", 443, "/codex?x=1", "devbox.example:443")),
        ("ws://[::1]:8080/ws", ("ws", "::1", 8080, "/ws", "[::1]:8080")),
        ("ws://host", ("ws", "host", 80, "/", "host:80")),
    ],
)
def test_remote_urls(url: str, expected: tuple[str, str, int, str, str]) -> None:
    target = remote_target(url, None, {})
    assert (target.scheme, target.host, target.port, target.resource, target.host_header) == expected


@pytest.mark.parametrize("url", ["http://host:1", "ws://", "host:1", "ws://host:99999", "ws://user:secret@host:1"])
def test_bad_remote_urls_are_usage_errors_that_do_not_echo_the_url(url: str) -> None:
    with pytest.raises(ProxyError) as caught:
        remote_target(url, None, {})
    assert caught.value.status == ExitStatus.USAGE
    assert "secret" not in caught.value.message


def test_token_over_plain_ws_only_to_loopback() -> None:
    env = {"T": "Zq9tok"}
    assert remote_target("ws://localhost:1", "T", env).token == "Zq9tok"
    assert remote_target("ws://127.8.9.10:1", "T", env).token == "Zq9tok"
    assert remote_target("ws://[::1]:1", "T", env).token == "Zq9tok"
    assert remote_target("wss://example.test:1", "T", env).token == "Zq9tok"
    with pytest.raises(ProxyError) as caught:
        remote_target("ws://example.invalid:1", "T", env)
    assert caught.value.status == ExitStatus.NOPERM
    assert "Zq9tok" not in caught.value.message


@pytest.mark.parametrize("value", ["", "   ", None])
def test_missing_or_empty_token_variable(value: str | None) -> None:
    env = {} if value is None else {"T": value}
    with pytest.raises(ProxyError, match=r"T .* is unset or empty") as caught:
        remote_target("ws://localhost:1", "T", env)
    assert caught.value.status == ExitStatus.USAGE


def test_token_is_trimmed_and_must_be_visible_ascii() -> None:
    assert remote_target("ws://localhost:1", "T", {"T": " tok\r\n"}).token == "tok"
    for bad in ["to k", "tok\nX-Evil: 1", "tök"]:
        with pytest.raises(ProxyError) as caught:
            remote_target("ws://localhost:1", "T", {"T": bad})
        assert caught.value.status == ExitStatus.USAGE
        assert bad not in caught.value.message


def test_token_never_in_repr_or_str() -> None:
    target = remote_target("wss://h:1/p", "T", {"T": "s3cret"})
    assert "s3cret" not in repr(target)
    assert "s3cret" not in str(target)
    assert isinstance(target, RemoteTarget)


def test_cacert_needs_wss() -> None:
    with pytest.raises(ProxyError, match="wss:// only"):
        remote_target("ws://localhost:1", None, {}, cacert="ca.pem")


def test_is_loopback() -> None:
    assert is_loopback("localhost") and is_loopback("LOCALHOST.") and is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com") and not is_loopback("::2")
