"""Pure rendering: specs in, text out. Reads templates, nothing else."""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Any

import jinja2

from .paths import data_dir
from .spec import DomainSpec, NetworkSpec


def _autoescape(name: str | None) -> bool:
    return bool(name and name.endswith(".xml.j2"))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one Jinja environment: strict, trimmed, XML autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=_autoescape,
        keep_trailing_newline=True,
    )
    env.filters["sh"] = lambda value: shlex.quote(str(value))  # every shell word in .sh.j2
    return env


def render(template: str, **context: Any) -> str:
    """Render one template from ``templates/``."""
    return environment().get_template(template).render(**context)


METADATA_NS = "https://vmctl.dev/xmlns/machine/1"


def domain_xml(spec: DomainSpec) -> str:
    return render("domain.xml.j2", d=spec, metadata_ns=METADATA_NS)


def network_xml(spec: NetworkSpec) -> str:
    return render("network.xml.j2", net=spec)


def pool_xml(name: str, path: str) -> str:
    return render("pool.xml.j2", name=name, path=path)
