"""``vmctl completion SHELL``: the script that wires a shell's completion to vmctl."""

from __future__ import annotations

import click


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script.

    \b
    Example:
      eval "$(vmctl completion bash)"
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click.Choice let only the shells click knows through
    # the root command, found through the context: importing it would be a cycle
    click.echo(cls(ctx.find_root().command, {}, "vmctl", "_VMCTL_COMPLETE").source())
