"""``python -m vmctl.cli``: the same as the ``vmctl`` command."""

from . import main

main(prog_name="vmctl")
