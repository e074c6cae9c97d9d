"""Shared folders: the spec strings, the guest's fstab, the host-side checks, plans."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
import yaml

from vmctl.errors import ConfigError, MissingDependency
from vmctl.guest.cloudinit import MOUNT_KEYS, fstab_lines, mount_config, seed_data
from vmctl.guest.keys import KeyPair
from vmctl.images.catalog import CachedImage
from vmctl.machines.shares import kernel_release, shares_for
from vmctl.model.mounts import Mount, Shares, parse_mounts
from vmctl.model.record import Record
from vmctl.model.spec import MachineSpec
from vmctl.plan import load


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/srv/app", Mount("/srv/app", "/srv/app")),
        ("/srv/app:ro", Mount("/srv/app", "/srv/app", readonly=True)),
        ("/srv/app:rw", Mount("/srv/app", "/srv/app")),
        ("/srv/app:/app", Mount("/srv/app", "/app")),
        ("/srv/app:/app:ro", Mount("/srv/app", "/app", readonly=True)),
        ("/srv/app/:/app/", Mount("/srv/app", "/app")),
        ("//srv//a b/./c/..:/x y", Mount("/srv/a b", "/x y")),
        ("/:/host", Mount("/", "/host")),
        ("/tmp/work", Mount("/tmp/work", "/tmp/work")),  # inside /tmp is fine, /tmp itself is not
        ("/data:/home/alice/src", Mount("/data", "/home/alice/src")),
    ],
)
def test_good_mounts(text: str, expected: Mount) -> None:
    assert Mount.parse(text) == expected
    assert Mount.parse(str(expected)) == expected  # the normal form parses to the same value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected HOSTDIR[:GUESTDIR][:ro]"),
        (":/app", "expected HOSTDIR[:GUESTDIR][:ro]"),
        ("/a:/b:/c", "expected HOSTDIR[:GUESTDIR][:ro]"),
        ("src", "host directory 'src' is not an absolute path"),
        ("./src:/src", "host directory './src' is not an absolute path"),
        ("/srv/app:app", "'app' is neither an absolute GUESTDIR nor ro or rw"),
        ("/srv/app:/app:rx", "'rx' is neither an absolute GUESTDIR nor ro or rw"),
        ("/srv/app:", "'' is neither an absolute GUESTDIR nor ro or rw"),
        ("/srv/app::ro", "guest directory '' is not an absolute path"),
        ("/srv/a\nb", "control character"),
        ("/", "a share on / would hide /bin"),
        ("/etc", "a share on /etc would hide /etc"),
        ("/srv:/usr", "a share on /usr would hide /usr"),
        ("/srv:/var", "a share on /var would hide /var/lib/cloud"),
        ("/srv:/var/lib", "would hide /var/lib/cloud"),
        ("/var/lib/docker", "would hide /var/lib/docker"),
        ("/srv:/var/lib/docker/volumes/x", "is inside /var/lib/docker, where nothing may be mounted"),
        ("/srv:/proc/x", "is inside /proc"),
        ("/srv:/sys/fs/x", "is inside /sys"),
        ("/srv:/dev/shm", "is inside /dev"),
        ("/srv:/boot/x", "is inside /boot"),
        ("/srv:/tmp", "a share on /tmp would hide /tmp"),
        ("/srv:/home", "a share on /home would hide /home"),
        ("/srv:/etc/../", "a share on / would hide"),
    ],
)
def test_bad_mounts_are_one_line_errors_naming_the_mount(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        Mount.parse(text)
    assert e.value.message.startswith(f"invalid mount {text!r}: ") and problem in e.value.message
    assert "\n" not in e.value.message and e.value.hint


def test_the_spec_keeps_normal_strings_that_round_trip_through_json() -> None:
    spec = MachineSpec("web", mounts=("/srv/app/", "/srv/cfg:/cfg:ro"))
    assert spec.mounts == ("/srv/app:/srv/app", "/srv/cfg:/cfg:ro")
    assert spec.shared_folders == (Mount("/srv/app", "/srv/app"), Mount("/srv/cfg", "/cfg", True))
    again = MachineSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and spec.differences(again) == []
    assert spec.differences(MachineSpec("web", mounts=("/srv/app",))) == [
        "mounts: ['/srv/app:/srv/app', '/srv/cfg:/cfg:ro'] -> ['/srv/app:/srv/app']"]
    assert MachineSpec.from_dict({"name": "old"}).mounts == ()  # a record from before mounts


def test_the_record_keeps_the_mounts() -> None:
    spec = MachineSpec("web", mounts=("/srv/app:/app:ro",))
    record = Record(spec, "debian", "ssh-ed25519 AAAA", "52:54:00:00:00:01", "iid", "/d", "/s", "/l", "tcg")
    assert Record.from_element(record.element()).spec.mounts == ("/srv/app:/app:ro",)


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        (("/a:/x", "/b:/x"), "mounts /a:/x and /b:/x both want guest directory /x"),
        (("/a:/x/", "/b:/x:ro"), "both want guest directory /x"),
        (("/a:/x", "/b:/x/y"), "mount /b:/x/y is inside the share /a:/x"),
        (("/a:/x/y", "/b:/x"), "mount /a:/x/y is inside the share /b:/x"),
        (("/a", "nope"), "invalid mount 'nope'"),
    ],
)
def test_mounts_that_clash(mounts: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        MachineSpec("web", mounts=mounts)


def test_one_string_is_not_a_list_of_mounts() -> None:
    with pytest.raises(ConfigError, match="mounts must be a list"):
        MachineSpec("web", mounts="/srv/app")  # type: ignore[arg-type]


def test_a_share_may_not_hide_the_login_users_ssh_keys() -> None:
    for guest in ("/home/debian", "/home/debian/.ssh"):
        with pytest.raises(ConfigError, match="would hide /home/debian/.ssh"):
            MachineSpec("web", user="debian", mounts=(f"/srv:{guest}",))
    assert MachineSpec("web", user="debian", mounts=("/srv:/home/debian/src",)).mounts
    assert parse_mounts(["/srv:/home/alice"], user="debian")  # another user's home is not the login's


# the guest's side ---------------------------------------------------------------------------------

SHARES = Shares((Mount("/srv/app", "/srv/my app"), Mount("/srv/cfg", "/cfg", True)), "virtiofs",
                Path("/usr/lib/qemu/virtiofsd"))


def test_fstab_lines_name_each_tag_escape_blanks_and_carry_nofail() -> None:
    assert fstab_lines(SHARES) == [
        "vmctl0\t/srv/my\\040app\tvirtiofs\trw,nofail,x-systemd.before=docker.service,comment=vmctl\t0\t0",
        "vmctl1\t/cfg\tvirtiofs\tro,nofail,x-systemd.before=docker.service,comment=vmctl\t0\t0",
    ]
    nine = fstab_lines(Shares(SHARES.mounts, "9p"))
    assert nine[1].split("\t")[2:4] == ["9p", "ro,trans=virtio,version=9p2000.L,msize=262144,nofail,"
                                        "x-systemd.before=docker.service,comment=vmctl"]


def test_the_seed_appends_to_fstab_and_starts_the_mounts_on_the_first_boot() -> None:
    key = KeyPair("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n", "ssh-ed25519 AAAA h")
    extra = {"runcmd": [["echo", "mine"]], "write_files": [{"path": "/etc/motd", "content": "hi"}]}
    data = seed_data(hostname="web", instance_id="iid", user="debian", authorized_keys=[], host_key=key,
                     mac="52:54:00:12:34:56", extra=extra, shares=SHARES)
    config = yaml.safe_load(data.user_data)
    fstab = config["write_files"][0]
    assert fstab["path"] == "/etc/fstab" and fstab["append"] is True
    assert fstab["content"] == "".join(line + "\n" for line in fstab_lines(SHARES))
    # vmctl's commands first, so the user's own runcmd can use the shares
    assert config["runcmd"] == [["systemctl", "daemon-reload"], ["systemctl", "start", "/srv/my app", "/cfg"],
                                ["echo", "mine"]]
    assert config["write_files"][1]["path"] == "/etc/motd"
    assert mount_config(None) == {} and mount_config(Shares((), "9p")) == {}
    assert tuple(mount_config(SHARES)) == MOUNT_KEYS  # what the fast profile keeps cloud-init's modules for


def test_the_fast_profile_keeps_the_modules_that_mount_the_shares() -> None:
    from vmctl.model.profiles import profile

    fast = profile("fast").cloud_config
    assert "write_files" in fast["cloud_init_modules"] and "runcmd" in fast["cloud_config_modules"]
    assert "scripts_user" in fast["cloud_final_modules"]


def test_a_bake_unmounts_the_shares_before_it_deletes_anything() -> None:
    from vmctl._core.render import render

    script = render("bake/generalize.sh.j2", user="debian")
    first_delete = min(script.index("\ncloud-init clean"), script.index("\nrm "))
    assert script.index("\numount -a -t virtiofs,9p\n") < first_delete
    assert "sed -i '/comment=vmctl/d' /etc/fstab" in script and "rm -rf --one-file-system" in script


# the host's side -----------------------------------------------------------------------------------


def _bzimage(path: Path, version: str) -> Path:
    header = bytearray(0x1000)
    header[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", header, 0x20E, 0x400)
    header[0x600:0x600 + len(version) + 1] = version.encode() + b"\0"
    path.write_bytes(bytes(header))
    return path


def _image(kernel: Path | None) -> CachedImage:
    return CachedImage("debian-12", "/x.qcow2", 1, "0" * 64, "build", 0.0, kernel=str(kernel) if kernel else None)


def test_kernel_release_reads_the_bzimage_header(tmp_path: Path) -> None:
    kernel = _bzimage(tmp_path / "vmlinuz", "6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP")
    assert kernel_release(kernel) == "6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP"
    (tmp_path / "junk").write_bytes(b"x" * 100)
    assert kernel_release(tmp_path / "junk") is None and kernel_release(tmp_path / "absent") is None


def test_virtiofs_when_the_host_has_virtiofsd(tmp_path: Path) -> None:
    (tmp_path / "share").mkdir()
    daemon = tmp_path / "virtiofsd"
    daemon.write_text("")
    spec = MachineSpec("web", mounts=(f"{tmp_path}/share:/data:ro",))
    shares = shares_for(spec, _image(None), virtiofsd=[tmp_path / "absent", daemon])
    assert shares == Shares((Mount(f"{tmp_path}/share", "/data", True),), "virtiofs", daemon)
    assert shares_for(MachineSpec("web"), _image(None)) is None


@pytest.mark.parametrize(("name", "message"), [
    ("absent", "host directory {d}/absent does not exist"), ("file", "{d}/file is not a directory")])
def test_the_host_directory_must_exist(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "file").write_text("")
    spec = MachineSpec("web", mounts=(f"{tmp_path}/{name}",))
    with pytest.raises(ConfigError) as e:
        shares_for(spec, _image(None))
    assert e.value.message == f"mount '{tmp_path}/{name}:{tmp_path}/{name}': " + message.format(d=tmp_path)


def test_9p_without_virtiofsd_unless_the_kernel_is_debians_cloud_one(tmp_path: Path) -> None:
    (tmp_path / "share").mkdir()
    spec = MachineSpec("web", mounts=(f"{tmp_path}/share",))
    generic = _bzimage(tmp_path / "generic", "6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1")
    assert shares_for(spec, _image(generic), virtiofsd=[]) == Shares(spec.shared_folders, "9p")
    assert shares_for(spec, _image(None), virtiofsd=[]) == Shares(spec.shared_folders, "9p")  # cannot tell
    cloud = _bzimage(tmp_path / "cloud", "6.1.0-50-cloud-amd64 (debian-kernel@lists.debian.org) #1")
    with pytest.raises(MissingDependency) as e:
        shares_for(spec, _image(cloud), virtiofsd=[])
    assert "6.1.0-50-cloud-amd64, which has no 9p" in e.value.message and "virtiofsd" in e.value.hint


# plans ---------------------------------------------------------------------------------------------


def test_a_plan_shares_folders_relative_to_itself(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("vms:\n  web:\n    mounts: [./src, 'data:/data:ro', /srv/cfg:/cfg]\n")
    assert load(plan).vms[0].mounts == (f"{tmp_path}/src:{tmp_path}/src", f"{tmp_path}/data:/data:ro",
                                         "/srv/cfg:/cfg")


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        ("/srv/app", "vms.web.mounts: expected list, got '/srv/app'"),
        ("[1]", "vms.web.mounts: expected a list of HOSTDIR[:GUESTDIR][:ro] strings, got [1]"),
        ("['/srv:/etc']", "vms.web.mounts: invalid mount '/srv:/etc': a share on /etc would hide /etc"),
        ("['/a:/x', '/b:/x']", "vms.web: mounts /a:/x and /b:/x both want guest directory /x"),
    ],
)
def test_plan_mount_errors(tmp_path: Path, mounts: str, message: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"vms:\n  web:\n    mounts: {mounts}\n")
    with pytest.raises(ConfigError) as e:
        load(plan)
    assert e.value.message == f"{plan}: {message}"
