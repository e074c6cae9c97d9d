"""What an image definition may hand to mmdebstrap, which runs as root: every value
checked, and none taken for an option."""

from __future__ import annotations

from pathlib import Path

import pytest

import vmctl
from vmctl.errors import ConfigError
from vmctl.images.build import build, mmdebstrap_argv
from vmctl.images.catalog import Build, Cache, check_mirror, check_package, check_suite

GOOD = {"suite": "bookworm", "mirror": "http://deb.debian.org/debian", "packages": ("curl",),
        "kernel_cmdline": "root=LABEL=vmctl-root ro"}


def recipe(**changes: object) -> Build:
    return Build(**{**GOOD, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("suite", ["bookworm", "trixie", "sid", "jammy"])
def test_plain_codenames_are_suites(suite: str) -> None:
    assert check_suite(suite) == suite


@pytest.mark.parametrize("suite", [
    "--customize-hook=chroot \"$1\" sh -c 'id > /tmp/pwned'", "-v", "bookworm\n", "bookworm ", "../x",
    "Bookworm", "", "b", "bookworm-backports",
])
def test_anything_else_is_not_a_suite(suite: str) -> None:
    with pytest.raises(ConfigError, match="invalid build.suite"):
        recipe(suite=suite)


@pytest.mark.parametrize("mirror", ["http://deb.debian.org/debian", "https://mirror.example:8443/debian/",
                                    "http://10.0.0.1/debian", "http://user:pw@mirror.lan/debian"])
def test_http_urls_with_a_host_are_mirrors(mirror: str) -> None:
    assert check_mirror(mirror) == mirror


@pytest.mark.parametrize("mirror", [
    "--setup-hook=touch /tmp/pwned", "-", "ftp://deb.debian.org/debian", "file:///srv/debian", "http:///debian",
    "deb.debian.org/debian", "http://deb.debian.org/debian --hook", "http://deb.debian.org/debian\n", "http://[::1",
    "deb http://deb.debian.org/debian bookworm main",
])
def test_anything_else_is_not_a_mirror(mirror: str) -> None:
    with pytest.raises(ConfigError, match="invalid build.mirror"):
        recipe(mirror=mirror)


@pytest.mark.parametrize("package", ["openssh-server", "g++", "libstdc++6", "busybox-static", "python3.11"])
def test_debian_package_names_are_packages(package: str) -> None:
    assert check_package(package) == package


@pytest.mark.parametrize("package", ["--hook-dir=/tmp", "-x", "a", "Foo", "curl,sudo", "/tmp/evil.deb",
                                     "curl=1.0", "curl/bookworm", "curl sudo", ""])
def test_anything_else_is_not_a_package(package: str) -> None:
    with pytest.raises(ConfigError, match="invalid package name"):
        recipe(packages=("curl", package))


def test_the_kernel_command_line_is_one_line() -> None:
    with pytest.raises(ConfigError, match="kernel_cmdline"):
        recipe(kernel_cmdline="ro\nMENU HIDDEN")


def test_options_end_before_the_suite_target_and_mirror() -> None:
    argv = mmdebstrap_argv(recipe(), Path("/r"))
    assert argv[-4:] == ["--", "bookworm", "/r", "http://deb.debian.org/debian"]
    assert all(a.startswith("--") for a in argv[1:-4])


def test_a_mirror_override_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="VMCTL_DEBIAN_MIRROR"):
        mmdebstrap_argv(recipe(), Path("/r"), "--customize-hook=sh")


def test_a_bad_definition_names_its_file_and_key(isolated: Path) -> None:
    (isolated / "defs" / "evil.yaml").write_text(
        "name: evil\nbuild:\n  suite: '--customize-hook=touch /tmp/pwned'\n  mirror: http://m/debian\n"
        "  packages: [curl]\n  kernel_cmdline: ro\n"
    )
    with pytest.raises(ConfigError) as e:
        vmctl.image_build("evil")
    assert e.value.message.startswith(f"{isolated / 'defs' / 'evil.yaml'}: invalid build.suite")
    assert "\n" not in e.value.message and e.value.hint
    assert not (isolated / "cache").exists()


def test_a_bad_mirror_in_the_environment_stops_the_build_before_anything_is_made(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMCTL_DEBIAN_MIRROR", "--customize-hook=touch /tmp/pwned")
    cache = Cache()
    with pytest.raises(ConfigError, match=r"invalid mirror \(\$VMCTL_DEBIAN_MIRROR\)"):
        build("x", recipe(), "debian", cache)
    assert not cache.root.exists()


def test_every_shipped_download_is_https_next_to_its_checksum_list_of_that_algorithm() -> None:
    from vmctl.images.catalog import definitions

    downloads = {d.name: d.download for d in definitions().values() if d.download}
    assert {"debian-12", "debian-13", "ubuntu-24-04"} <= set(downloads)
    for name, download in downloads.items():
        assert download.url.startswith("https://") and download.checksums.startswith("https://"), name
        assert download.url.rsplit("/", 1)[0] == download.checksums.rsplit("/", 1)[0], name
        assert download.checksums.endswith(f"/{download.algorithm.upper()}SUMS"), name
