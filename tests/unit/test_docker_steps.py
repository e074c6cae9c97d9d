"""The Docker install steps of every method, rendered and checked without a guest."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from vmctl._core.render import render
from vmctl.engine.containers import tar_kind
from vmctl.engine.debs import Deb, parse_simulation, settled
from vmctl.engine.install import METHODS, PACKAGES, daemon_json, steps
from vmctl.errors import ConfigError


@pytest.mark.parametrize("method", METHODS)
def test_every_method_prepares_installs_and_finishes_with_valid_shell(method: str) -> None:
    rendered = steps(method, "debian")  # type: ignore[arg-type]
    assert [name for name, _ in rendered][0::2] == ["prepare", "finish"]
    for name, text in rendered:
        done = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, f"{method}/{name}: {done.stderr}"
        assert "set -eu" in text


def test_distro_installs_debians_docker_io() -> None:
    text = dict(steps("distro", "debian"))["install-distro"]
    assert "apt-get update" in text and all(p in text for p in PACKAGES)


@pytest.mark.parametrize(("suite_has_cli", "extra"), [(True, " docker-cli"), (False, "")])
def test_distro_adds_docker_cli_where_the_suite_packages_it_apart(
    tmp_path: Path, suite_has_cli: bool, extra: str
) -> None:
    """Debian 13's docker.io leaves its CLI to docker-cli; Debian 12 has no such package."""
    text = dict(steps("distro", "debian"))["install-distro"]
    known = "docker-cli" if suite_has_cli else "none"
    (tmp_path / "apt-cache").write_text(f'#!/bin/sh\n[ "$3" = {known} ] && echo "Package: $3"\n:\n')
    (tmp_path / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/apt-get.log\n')
    for fake in ("apt-cache", "apt-get"):
        (tmp_path / fake).chmod(0o755)
    done = subprocess.run(["bash", "-c", text], env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    install = (tmp_path / "apt-get.log").read_text().splitlines()[-1]
    assert install.endswith(" ".join(PACKAGES) + extra)


def test_docker_ce_uses_dockers_repository_for_the_guests_release() -> None:
    text = dict(steps("docker-ce", "debian", os_id="ubuntu", codename="jammy"))["install-docker-ce"]
    assert "https://download.docker.com/linux/ubuntu/gpg" in text
    assert "signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/ubuntu jammy stable" in text
    assert "docker-ce docker-ce-cli containerd.io" in text


def test_offline_installs_only_what_was_pushed() -> None:
    text = dict(steps("offline", "debian", offline_dir="/tmp/x y"))["install-offline"]
    assert "dpkg -i --force-confold '/tmp/x y'/*.deb" in text and "apt-get" not in text


def test_daemon_config_rotates_logs_and_can_turn_live_restore_off() -> None:
    on, off = json.loads(daemon_json(True)), json.loads(daemon_json(False))
    assert on["log-opts"] == {"max-size": "10m", "max-file": "3"} and on["log-driver"] == "json-file"
    assert on["live-restore"] is True and off["live-restore"] is False  # Swarm managers need it off


def test_shell_words_are_quoted() -> None:
    text = render("docker/finish.sh.j2", user="a b'; rm -rf /", check_image="x")
    assert "usermod -aG docker 'a b'\"'\"'; rm -rf /'" in text


def test_apt_simulation_is_parsed_in_order() -> None:
    out = (
        "NOTE: This is only a simulation!\n"
        "Inst runc (1.1.5+ds1-1+deb12u1 Debian:12.8/stable [amd64])\n"
        "Inst docker.io (20.10.24+dfsg1-1+b3 Debian:12.8/stable [amd64]) []\n"
        "Inst libfoo [1.0-1] (1:2.0-1 Debian:12.8/stable [amd64])\n"
        "Conf runc (1.1.5+ds1-1+deb12u1 Debian:12.8/stable [amd64])\n"
    )
    debs = parse_simulation(out)
    assert debs == [Deb("runc", "1.1.5+ds1-1+deb12u1", "amd64"), Deb("docker.io", "20.10.24+dfsg1-1+b3", "amd64"),
                    Deb("libfoo", "1:2.0-1", "amd64")]
    assert debs[2].filename == "libfoo_1%3a2.0-1_amd64.deb"


def test_tar_kinds(tmp_path: Path) -> None:
    saved, rootfs = tmp_path / "saved.tar", tmp_path / "rootfs.tar"
    (tmp_path / "manifest.json").write_text("[]")
    (tmp_path / "bin").mkdir()
    with tarfile.open(saved, "w") as t:
        t.add(tmp_path / "manifest.json", "manifest.json")
    with tarfile.open(rootfs, "w") as t:
        t.add(tmp_path / "bin", "./bin")
    assert tar_kind(saved) == "image" and tar_kind(rootfs) == "rootfs"
    (tmp_path / "junk.tar").write_text("not a tar")
    with pytest.raises(ConfigError, match="not a readable tar"):
        tar_kind(tmp_path / "junk.tar")


def test_ssh_include_is_added_once_and_stale_ones_are_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.machines import sshconfig

    monkeypatch.setenv("VMCTL_STATE_DIR", str(tmp_path / "state"))
    sshconfig.config_dir().mkdir(parents=True)
    config = tmp_path / "ssh_config"
    config.write_text(f"{sshconfig.MARK}\nInclude /gone/away/*.conf\nHost mine\n  User me\n")
    sshconfig.ensure_include(config)
    sshconfig.ensure_include(config)
    text = config.read_text()
    assert text.count("Include ") == 1 and f"Include {sshconfig.config_dir()}/*.conf" in text.splitlines()[1]
    assert "/gone/away" not in text and "Host mine\n  User me" in text


def test_packages_an_interrupted_dpkg_left_in_between_are_resolved_again() -> None:
    """containerd unpacked, docker.io half-installed: both are installed again, tini stays."""
    status = "\n\n".join([
        "Package: tini\nStatus: install ok installed\nVersion: 0.19",
        "Package: containerd\nStatus: install ok unpacked\nVersion: 1.6",
        "Package: docker.io\nStatus: install reinstreq half-installed\nVersion: 20.10",
        "Package: runc\nStatus: install ok half-configured\nVersion: 1.1",
    ]) + "\n"
    kept = settled(status)
    assert "Package: tini" in kept
    assert all(f"Package: {name}" not in kept for name in ("containerd", "docker.io", "runc"))
