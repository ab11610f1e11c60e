"""``codex-appserver serve devices`` and ``serve``'s own options, in process (click's CliRunner): usage rules,
``serve`` still runs without a subcommand, and what each command prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from proxy.cli import main
from proxy.serve.pairing import parse_pairing_uri


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "codex"


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["serve", *args], env={"CODEX_HOME": str(home)}, catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bind", "127.0.0.1:0", "devices", "list"], "--bind cannot be combined with 'devices'"),
        (["--tls-self-signed", "devices", "list"], "--tls-self-signed cannot be combined with 'devices'"),
        (["devices", "add", "phone", "--qr", "--join"], "--qr and --join cannot be combined"),
        (["devices", "add", "phone", "--url", "wss://h:1/ws"], "--url needs --qr"),
        (["devices", "add", "phone", "--ttl", "5"], "--ttl needs --join"),
        (["devices", "add", "phone", "--role", "admin"], "'admin' is not one of 'full', 'observer'"),
        (["--tls-self-signed", "--tls-cert", "c.pem"], "--tls-self-signed cannot be combined with --tls-cert"),
    ],
)
def test_usage_errors_exit_2(home: Path, args: list[str], needle: str) -> None:
    result = run(home, *args)
    assert result.exit_code == 2
    assert needle in result.output
    assert not (home / "codex-appserver" / "devices.json").exists()


def test_a_bad_name_exits_2_with_one_line(home: Path) -> None:
    result = run(home, "devices", "add", "my phone")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "codex-appserver: 'my phone' is not a device name: use 1 to 64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    ]


def test_add_prints_the_token_once_list_and_revoke(home: Path) -> None:
    added = CliRunner().invoke(main, ["serve", "devices", "add", "phone"], env={"CODEX_HOME": str(home)})
    assert added.exit_code == 0
    token = added.stdout.strip()
    assert len(token) == 43
    assert "added device phone (role full)" in added.stderr
    again = run(home, "devices", "add", "phone")
    assert again.exit_code == 2
    assert "exists already" in again.output

    listed = CliRunner().invoke(main, ["serve", "devices", "list"], env={"CODEX_HOME": str(home)})
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ROLE", "CREATED", "LAST", "SEEN", "CONNECTED"]
    assert row.split()[:2] == ["phone", "full"]
    assert row.split()[3:] == ["never", "no"]
    assert token not in listed.output
    assert "no bridge is running" in listed.stderr

    revoked = CliRunner().invoke(main, ["serve", "devices", "revoke", "phone"], env={"CODEX_HOME": str(home)})
    assert revoked.exit_code == 0
    assert "revoked device phone (role full); no bridge is running" in revoked.stderr
    missing = run(home, "devices", "revoke", "phone")
    assert missing.exit_code == 2
    assert "no device is named 'phone'" in missing.output


def test_qr_for_a_plain_url_has_no_fingerprint_and_makes_no_certificate(home: Path) -> None:
    args = ["serve", "devices", "add", "desk", "--qr", "--url", "ws://127.0.0.1:9100/ws"]
    result = CliRunner().invoke(main, args, env={"CODEX_HOME": str(home)})
    assert result.exit_code == 0
    info = parse_pairing_uri(result.stdout.splitlines()[-1])
    assert (info.url, info.sha256, info.name, len(info.token)) == ("ws://127.0.0.1:9100/ws", None, "desk", 43)
    assert not (home / "codex-appserver" / "tls-cert.pem").exists()
    bad = run(home, "devices", "add", "tv", "--qr", "--url", "https://x/")
    assert bad.exit_code == 2
    assert "is not a ws:// or wss:// URL" in bad.output
