"""Parameter types shared by the command modules, kept light for ``--help`` and completion."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click.types import ChoiceInfoDict


class LazyChoice(click.Choice[str]):
    """A :class:`click.Choice` whose values are a constant of another module, read on first use.

    The boot profiles live in :mod:`vmctl.model.profiles` (which loads PyYAML) and
    the Docker install methods in :mod:`vmctl.engine.install` (which loads Jinja):
    importing them where the option is declared would make ``vmctl ls --help``
    and completion pay for modules they never use. Read when the choices are
    needed (parsing the option, its help, its completion), the values, help
    text and error messages stay exactly those of a plain ``click.Choice``, and
    nothing is copied that could drift from the defining module.
    """

    def __init__(self, module: str, attribute: str) -> None:
        self._source = (module, attribute)
        super().__init__((), case_sensitive=True)
        self._values: tuple[str, ...] | None = None

    @property
    def choices(self) -> tuple[str, ...]:
        """The defining module's constant, imported the first time it is asked for."""
        if self._values is None:
            module, attribute = self._source
            self._values = tuple(getattr(importlib.import_module(module), attribute))
        return self._values

    @choices.setter
    def choices(self, values: Iterable[str]) -> None:
        self._values = tuple(values)

    def to_info_dict(self) -> ChoiceInfoDict[str]:
        """What a documentation tool sees is a plain Choice, as before the values were lazy."""
        return {**super().to_info_dict(), "param_type": "Choice"}

    def __repr__(self) -> str:
        return f"LazyChoice({'.'.join(self._source)})"
