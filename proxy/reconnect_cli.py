"""The ``--reconnect`` options, shared by ``proxy`` and ``serve`` (click only: parsing and combination rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from .clitypes import FiniteFloat

F = TypeVar("F", bound=Callable[..., object])

#: ``--reconnect-timeout`` when not given, in seconds.
DEFAULT_RECONNECT_TIMEOUT = 60.0


def reconnect_options(command: F) -> F:
    """Add ``--reconnect``, ``--reconnect-timeout SECONDS`` and ``--notify-reconnect`` to a click command."""
    command = click.option(
        "--notify-reconnect",
        is_flag=True,
        help="With --reconnect, tell the client with proxy/reconnecting and proxy/reconnected notifications.",
    )(command)
    command = click.option(
        "--reconnect-timeout",
        type=FiniteFloat(min=0, min_open=True),
        default=DEFAULT_RECONNECT_TIMEOUT,
        show_default=True,
        metavar="SECONDS",
        help="With --reconnect, how long reconnecting and restoring the session may take before giving up.",
    )(command)
    command = click.option(
        "--reconnect",
        is_flag=True,
        help="When the connection to the app-server is lost, reconnect and restore the session (initialize, "
        "thread/resume) instead of ending it.",
    )(command)
    return command


def check_reconnect(reconnect: bool, notify: bool) -> None:
    """``--notify-reconnect`` and a ``--reconnect-timeout`` given on the command line need ``--reconnect``.

    :raises click.UsageError: one of them without ``--reconnect`` (exit 2).
    """
    if reconnect:
        return
    source = click.get_current_context().get_parameter_source("reconnect_timeout")
    for given, name in (
        (notify, "--notify-reconnect"),
        (source is not click.core.ParameterSource.DEFAULT, "--reconnect-timeout"),
    ):
        if given:
            raise click.UsageError(f"{name} needs --reconnect")
