"""Option values a hostile or careless caller may pass: each one is a usage error (2), never a hang or a traceback."""

from __future__ import annotations

import click
import pytest

from proxy.cli import main

FLOAT_OPTIONS = ["--wait", "--connect-timeout", "--drain-timeout", "--ping-interval", "--ping-timeout"]
NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "+inf", "1e999"]


def parse(*args: str) -> click.Context:
    """Parse the proxy command's options only (nothing runs)."""
    command = main.commands["proxy"]
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
