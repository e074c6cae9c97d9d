"""cloud-init seed data: built as data, merged, dumped safely, packed in an ISO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vmctl.errors import ConfigError
from vmctl.guest.cloudinit import merge, parse_user_data, seed_data
from vmctl.guest.keys import KeyPair, check_public_key, fingerprint, generate, read_public_key
from vmctl.guest.seed import read_seed, seed_iso

KEY = KeyPair("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
              "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== host")


def _seed(**kw: object) -> dict[str, object]:
    args: dict[str, object] = {"hostname": "web", "instance_id": "iid-web-1", "user": "debian",
                                   "authorized_keys": ["ssh-ed25519 AAAA client"], "host_key": KEY,
                                   "mac": "52:54:00:12:34:56"}
    args.update(kw)
    data = seed_data(**args)  # type: ignore[arg-type]
    assert data.user_data.startswith("#cloud-config\n")
    return {"user": yaml.safe_load(data.user_data), "meta": yaml.safe_load(data.meta_data),
            "net": yaml.safe_load(data.network_config)}


def test_user_data_pins_the_host_key_and_generates_none() -> None:
    user = _seed()["user"]
    assert isinstance(user, dict)
    assert user["ssh_keys"] == {"ed25519_private": KEY.private, "ed25519_public": KEY.public}
    assert "ssh_genkeytypes" not in user and user["ssh_deletekeys"] is True  # schema-valid in cloud-init 25
    assert user["users"][0]["name"] == "debian"
    assert user["users"][0]["ssh_authorized_keys"] == ["ssh-ed25519 AAAA client"]
    assert user["ssh_pwauth"] is False


def test_meta_and_network_config() -> None:
    seed = _seed()
    assert seed["meta"] == {"instance-id": "iid-web-1", "local-hostname": "web"}
    assert seed["net"] == {"version": 2, "ethernets": {"eth0": {
        "match": {"macaddress": "52:54:00:12:34:56"}, "set-name": "eth0", "dhcp4": True}}}


def test_hostile_values_stay_values() -> None:
    evil = 'a"b\nusers: []\n# <x> & \'y\''
    user = _seed(authorized_keys=[evil])["user"]
    assert isinstance(user, dict)
    assert user["users"][0]["ssh_authorized_keys"] == [evil] and len(user["users"]) == 1


def test_extra_user_data_merges() -> None:
    extra = parse_user_data("#cloud-config\npackages: [htop]\nusers:\n  - name: extra\nruncmd: [[touch, /x]]\n")
    user = _seed(extra=extra)["user"]
    assert isinstance(user, dict)
    assert [u["name"] for u in user["users"]] == ["debian", "extra"]
    assert user["packages"] == ["htop"] and user["runcmd"] == [["touch", "/x"]]


def test_merge_rules() -> None:
    assert merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2], "e": 3}, "d": 2}) == {
        "a": {"b": 1, "c": [1, 2], "e": 3}, "d": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [", "not valid YAML"), ("- a\n- b\n", "must be a cloud-config mapping"),
     ("ssh_keys: {}\n", "sets ssh_keys"), ("ssh_genkeytypes: [rsa]\n", "sets ssh_genkeytypes")],
)
def test_bad_user_data(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_user_data(text, "extra.yaml")


def test_seed_iso_round_trips_with_cidata_label(tmp_path: Path) -> None:
    data = seed_data(hostname="web", instance_id="i", user="debian", authorized_keys=[], host_key=KEY,
                     mac="52:54:00:12:34:56")
    path = tmp_path / "seed.iso"  # (its volume is made mode 0600: see test_render)
    path.write_bytes(seed_iso(data))
    files = read_seed(path)
    assert files == data.files()
    with path.open("rb") as f:
        f.seek(16 * 2048 + 40)
        assert f.read(32).decode().strip() == "cidata"
    # inside, each file is root's alone: a guest that mounts the seed does not show the key to others
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        for name in data.files():
            record = iso.get_record(rr_path=f"/{name}")
            assert record.rock_ridge.get_file_mode() == 0o100400, name
    finally:
        iso.close()


def test_generated_keys_are_openssh_and_distinct() -> None:
    a, b = generate("x"), generate("x")
    assert a.public.startswith("ssh-ed25519 ") and a.public.endswith(" x")
    assert "BEGIN OPENSSH PRIVATE KEY" in a.private and a.public != b.public
    assert fingerprint(a.public).startswith("SHA256:") and fingerprint(a.public) != fingerprint(b.public)


def test_public_key_files(tmp_path: Path) -> None:
    good = tmp_path / "id.pub"
    good.write_text(generate("me").public + "\n")
    assert read_public_key(good).endswith(" me")
    with pytest.raises(ConfigError, match="cannot read SSH key file"):
        read_public_key(tmp_path / "missing.pub")
    (tmp_path / "bad.pub").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="is not an SSH public key"):
        read_public_key(tmp_path / "bad.pub")
    with pytest.raises(ConfigError, match="malformed"):
        check_public_key("ssh-ed25519 !!!notbase64", "x")


def test_seed_carries_what_an_ssh_login_needs_as_plain_files() -> None:
    data = seed_data(
        hostname="web",
        instance_id="i",
        user="debian",
        authorized_keys=["ssh-ed25519 A a", "ssh-ed25519 B b"],
        host_key=KEY,
        mac="52:54:00:12:34:56",
    )
    files = data.files()
    assert files["vmctl-user"] == b"debian\n" and files["vmctl-hostname"] == b"web\n"
    assert files["vmctl-host-key"] == KEY.private.encode()
    assert files["vmctl-host-key.pub"] == (KEY.public + "\n").encode()
    assert files["vmctl-authorized-keys"] == b"ssh-ed25519 A a\nssh-ed25519 B b\n"


def test_cloud_init_errors_come_from_its_status_file() -> None:
    from vmctl.guest.cloudinit import cloud_init_errors

    def status(stage: object = None, **errors: list[str]) -> str:
        stages = {s: {"errors": errors.get(s.replace("-", "_"), []), "finished": 1.0, "start": 0.5}
                  for s in ("init-local", "init", "modules-config", "modules-final")}
        return json.dumps({"v1": {"datasource": "DataSourceNoCloud", **stages, "stage": stage}})

    assert cloud_init_errors(status()) == []
    failed = status(modules_final=["('scripts_user', RuntimeError('Runparts: 1 failures'))"])
    assert cloud_init_errors(failed) == ["modules-final: ('scripts_user', RuntimeError('Runparts: 1 failures'))"]
    assert cloud_init_errors(status(stage="modules-config")) == ["cloud-init is still in its modules-config stage"]
    assert "left no status" in cloud_init_errors("")[0]  # it never ran


def test_the_seed_carries_etc_hosts_as_cloud_init_writes_it() -> None:
    from vmctl.guest.cloudinit import seed_data
    from vmctl.guest.keys import generate

    seed = seed_data(hostname="web", instance_id="iid-1", user="debian", authorized_keys=["ssh-ed25519 AAAA x"],
                     host_key=generate("t"), mac="52:54:00:00:00:01")
    hosts = seed.files()["vmctl-hosts"].decode()
    assert "127.0.1.1 web web\n127.0.0.1 localhost\n" in hosts and hosts.endswith("ff02::2 ip6-allrouters\n\n")
    assert hosts.startswith("# Your system has configured 'manage_etc_hosts' as True.\n")
