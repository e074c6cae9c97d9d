"""The one Jinja environment, and rendering a template from ``templates/``.

Pure: reads templates, nothing else. What each template is for is decided by its
caller (:mod:`vmctl.hypervisor.xml` for libvirt XML, the cloud-init seed, the
image build and Docker install scripts).
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Any

import jinja2

from .paths import data_dir


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
