"""Real bash completes ``serve devices`` with the committed completions/codex-appserver.bash: click answers from
the code, so the subcommands, their options and the role choices need no change to the file."""

from __future__ import annotations

from .test_completions import bash_completes


def test_bash_completes_the_devices_subcommands() -> None:
    assert bash_completes("codex-appserver", "serve", "dev") == ["devices"]
    assert sorted(bash_completes("codex-appserver", "serve", "devices", "")) == ["add", "list", "revoke"]


def test_bash_completes_the_add_options_and_roles() -> None:
    assert bash_completes("codex-appserver", "serve", "devices", "add", "phone", "--j") == ["--join"]
    assert bash_completes("codex-appserver", "serve", "devices", "add", "phone", "--role", "") == ["full", "observer"]


def test_bash_completes_the_tls_self_signed_flag() -> None:
    assert bash_completes("codex-appserver", "serve", "--tls-s") == ["--tls-self-signed"]
