"""Boot the built image under the runtime and watch it reach userspace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import IMAGE, vmctl, vmctl_json


@pytest.mark.parametrize("boot", ["disk", "kernel"])
def test_image_boots_to_a_login_prompt(runtime: dict[str, Any], boot: str) -> None:
    report = vmctl_json("image", "test", IMAGE, "--boot", boot)
    marks = report["milestones"]
    assert list(marks) == ["kernel", "userspace", "login"]
    assert 0 < marks["kernel"] <= marks["userspace"] <= marks["login"]
    # (a kernel or cloud-init line may follow the prompt on the serial console)
    assert any(line.rstrip().endswith("login:") or "login: " in line for line in report["console_tail"])
    assert report["boot"] == boot
    # nothing of the test boot is left behind
    machines = Path(os.environ["VMCTL_STATE_DIR"]) / "machines"
    assert not [p for p in machines.iterdir() if p.name.startswith("vmctl-image-test-")]
    assert vmctl("--connect", runtime["uri"], "image", "ls").returncode == 0


def test_an_image_not_in_the_cache_is_refused(runtime: dict[str, Any]) -> None:
    done = vmctl("image", "test", "no-such-image", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown image 'no-such-image'")
