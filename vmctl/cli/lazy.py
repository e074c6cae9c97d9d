"""A click group that imports a subcommand's module only when that subcommand is used.

This is click's documented "LazyGroup" pattern, plus the two places where click
would otherwise load every subcommand: the command list of ``--help`` and the
completion of command names. Both are drawn from a static table instead, so
``vmctl --help`` and ``vmctl <TAB>`` load no command module at all. The table
also feeds click's "Did you mean ...?" for a mistyped command.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from gettext import gettext as _
from typing import TYPE_CHECKING, Any, NamedTuple

import click
from click.exceptions import NoSuchCommand

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem


class LazyCommand(NamedTuple):
    """Where a subcommand lives and what ``--help`` says about it before it is imported."""

    module: str  # relative to the group's package, e.g. ".machines"
    attribute: str  # the click.Command object in that module
    help: str  # the first paragraph of the command's docstring: click shortens it per width
    hidden: bool = False


class LazyGroup(click.Group):
    """A group whose subcommands are a table of :class:`LazyCommand`, imported on use.

    The table must agree with the modules (name, first paragraph, hidden); the
    unit tests resolve every entry and compare, so it cannot drift unnoticed.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand], package: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)
        self.package = package

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.lazy, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        command = getattr(importlib.import_module(entry.module, self.package), entry.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry.module}.{entry.attribute} is not a click command")
        return command

    def summary(self, cmd_name: str) -> click.Command:
        """A stand-in with the listed command's name, help and hidden flag, for lists.

        Its :meth:`click.Command.get_short_help_str` shortens the help exactly as the
        real command's would, so the list looks the same without the import.
        """
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return self.commands[cmd_name]
        return click.Command(cmd_name, help=entry.help, hidden=entry.hidden)

    def visible(self, ctx: click.Context, prefix: str = "") -> list[tuple[str, click.Command]]:
        """The names and stand-ins of the commands a user may see, in list order."""
        found = ((name, self.summary(name)) for name in self.list_commands(ctx) if name.startswith(prefix))
        return [(name, command) for name, command in found if not command.hidden]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own command list (same widths and shortening) from the table."""
        commands = self.visible(ctx)
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _command in commands)
        with formatter.section(_("Commands")):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in commands])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Complete command names from the table, then options as click does."""
        from click.shell_completion import CompletionItem

        results = [CompletionItem(name, help=command.get_short_help_str())
                   for name, command in self.visible(ctx, incomplete)]
        # click.Group's own version would import every command to read its help
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click >= 8.4 suggests close names from ``self.commands``, empty here: give it the table's."""
        try:
            return super().resolve_command(ctx, args)
        except NoSuchCommand as e:
            raise NoSuchCommand(e.command_name, possibilities=self.list_commands(ctx), ctx=ctx) from None
