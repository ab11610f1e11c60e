"""A click group whose subcommands are imported only when one is asked for, so that startup, ``--help`` and
each TAB of a shell completion do not import what another subcommand runs (click's documented lazy loading)."""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """A :class:`click.Group` whose subcommands named in *lazy* are imported when first asked for (click's
    documented lazy loading: :meth:`list_commands` and :meth:`get_command`).

    :param lazy: command name -> ``"module:attribute"`` of the :class:`click.Command`.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module, __package__), attribute)
            assert isinstance(command, click.Command), f"{self.lazy[cmd_name]} is not a click command"
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click >= 8.4 suggests close names ("Did you mean 'serve'?") from the commands loaded so far only.
            if not hasattr(click.exceptions, "NoSuchCommand") or not isinstance(exc, click.exceptions.NoSuchCommand):
                raise
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def all_commands(self) -> dict[str, click.Command]:
        """Every subcommand by name, the lazy ones imported: for the man page and completion checks."""
        ctx = click.Context(self)
        found = {name: self.get_command(ctx, name) for name in self.list_commands(ctx)}
        return {name: command for name, command in found.items() if command is not None}
