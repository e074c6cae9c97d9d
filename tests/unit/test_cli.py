"""The command line's surface: help with examples, completion, errors as one line plus a hint."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from vmctl.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*prefix, name))
    return out


@pytest.mark.parametrize("path", _commands(main))
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output or path == ("completion",) or "eval" in result.output, result.output


def test_completion_of_commands_and_image_names(isolated: object) -> None:
    env = {**os.environ, "_VMCTL_COMPLETE": "bash_complete", "COMP_WORDS": "vmctl image bu", "COMP_CWORD": "2"}
    done = subprocess.run([sys.executable, "-m", "vmctl.cli"], env=env, capture_output=True, text=True)
    assert "build" in done.stdout
    env.update(COMP_WORDS="vmctl image build deb", COMP_CWORD="3")
    done = subprocess.run([sys.executable, "-m", "vmctl.cli"], env=env, capture_output=True, text=True)
    assert "debian-12" in done.stdout
    script = CliRunner().invoke(main, ["completion", "bash"]).output
    assert "_VMCTL_COMPLETE" in script and "complete " in script


def test_an_error_is_one_line_plus_a_hint_and_exit_1(isolated: object) -> None:
    done = subprocess.run([sys.executable, "-m", "vmctl.cli", "image", "pull", "no-such"], capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: unknown image 'no-such'") and lines[1].startswith("hint: ") and len(lines) == 2


def test_up_refuses_a_boot_mode_the_profile_contradicts(isolated: object) -> None:
    result = CliRunner().invoke(main, ["up", "x", "--profile", "fast", "--boot", "disk"])
    assert result.exit_code == 1
    assert "profile 'fast' needs boot mode 'kernel', not 'disk'" in result.output


def test_lab_refuses_bad_input_before_booting(isolated: object, tmp_path: object) -> None:
    for args, message in [(["--runs", "0"], "runs 0 is out of range"),
                          (["--profile", "fast", "--profile", "fast"], "given twice"),
                          (["--json", "/nonexistent-dir/x.json"], "not a writable directory")]:
        result = CliRunner().invoke(main, ["lab", "boot", *args])
        assert result.exit_code == 1 and message in result.output, result.output
