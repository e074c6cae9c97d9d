"""The metadata record: read what is known, ignore what a newer vmctl added, name the VM when it cannot."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from vmctl.errors import ConfigError
from vmctl.machines.machine import Machine
from vmctl.model.record import PHASES, Record
from vmctl.model.spec import MachineSpec


def _record(**kw: Any) -> Record:
    spec = MachineSpec("web", ports=("8080:80",))
    base = Record(spec, "debian", "ssh-ed25519 AAAA", "52:54:00:00:00:01", "iid", "/d", "/s", "/l", "tcg",
                  netns="ns", created=1.5, timings={"define": 0.5})
    return replace(base, **kw)


def _raw(record: Record) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(record.to_json())
    return raw


def test_a_record_round_trips_through_json_and_its_element() -> None:
    record = _record(phases=("define", "start"))
    assert Record.from_json(record.to_json()) == record
    assert Record.from_element(record.element()) == record
    assert _raw(record)["phases"] == ["define", "start"]


def test_a_new_record_has_no_phases_done_and_they_are_up_s_phases() -> None:
    assert _record().phases == () and Record.from_json(_record().to_json()).phases == ()
    assert PHASES == ("define", "start", "ip", "ssh", "cloud_init", "docker")


def test_a_record_from_before_phases_were_recorded_loads_with_phases_none() -> None:
    raw = _raw(_record())
    del raw["phases"]
    old = Record.from_json(json.dumps(raw))
    assert old.phases is None and old == _record(phases=None)
    assert _raw(old)["phases"] is None and Record.from_json(old.to_json()).phases is None


def test_keys_a_newer_vmctl_added_are_ignored_in_the_record_and_its_spec() -> None:
    raw = _raw(_record(phases=("define",)))
    raw["gpu"] = {"model": "virtio"}
    raw["spec"]["tpm"] = True
    record = Record.from_json(json.dumps(raw))
    assert record == _record(phases=("define",))


@pytest.mark.parametrize("field", ["host_key", "mac", "serial_log"])
def test_a_missing_required_field_is_a_config_error_naming_the_vm(field: str) -> None:
    raw = _raw(_record())
    del raw[field]
    with pytest.raises(ConfigError, match=f"VM 'web': vmctl cannot read its metadata: it lacks {field}") as caught:
        Record.from_json(json.dumps(raw))
    assert "newer vmctl" in caught.value.hint


def test_the_caller_s_name_for_the_vm_is_the_one_errors_use() -> None:
    raw = _raw(_record())
    del raw["spec"]
    with pytest.raises(ConfigError, match="VM 'dom-1': .* it lacks spec"):
        Record.from_element(f'<machine xmlns="x">{json.dumps(raw)}</machine>', "dom-1")


@pytest.mark.parametrize("change", [
    {"profile": "turbo"},  # a profile only a newer vmctl has
    {"cpus": "two"},
    {"name": None},
    {"name": "Not A Name"},
])
def test_a_spec_this_vmctl_cannot_take_is_a_config_error_naming_the_vm(change: dict[str, Any]) -> None:
    raw = _raw(_record())
    raw["spec"].update(change)
    with pytest.raises(ConfigError, match="VM 'web': vmctl cannot read its metadata: its spec does not fit"):
        Record.from_json(json.dumps(raw), "web")


def test_without_the_callers_name_the_spec_names_the_vm() -> None:
    raw = _raw(_record())
    raw["spec"]["profile"] = "turbo"
    with pytest.raises(ConfigError, match="VM 'web': .*its spec does not fit this vmctl: unknown"):
        Record.from_json(json.dumps(raw))
    del raw["spec"]["name"]
    with pytest.raises(ConfigError, match="VM '\\?': .*its spec does not fit this vmctl: .*'name'"):
        Record.from_json(json.dumps(raw))


@pytest.mark.parametrize(("text", "why"), [
    ("{not json", "it is not JSON"), ("[1, 2]", "it is not a JSON object"),
    ('{"spec": 3, "user": "u"}', "it lacks host_key"),
])
def test_metadata_that_is_not_a_record_is_a_config_error(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"VM 'web': vmctl cannot read its metadata: {why}"):
        Record.from_json(text, "web")


def test_a_spec_that_is_not_an_object_or_phases_that_are_not_a_list_are_config_errors() -> None:
    raw = _raw(_record())
    with pytest.raises(ConfigError, match="its spec is not a JSON object"):
        Record.from_json(json.dumps({**raw, "spec": "web"}), "web")
    with pytest.raises(ConfigError, match="its phases are not a list of names"):
        Record.from_json(json.dumps({**raw, "phases": "define"}), "web")


def test_metadata_that_is_not_xml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="VM 'web': vmctl cannot read its metadata: it is not XML"):
        Record.from_element("<machine", "web")


@pytest.mark.parametrize(("docker", "done", "missing"), [
    (False, None, ()),  # made before phases were recorded: complete
    (False, ("define",), ("start", "ip", "ssh", "cloud_init")),
    (False, ("define", "start", "ip", "ssh", "cloud_init"), ()),
    (True, ("define", "start", "ip", "ssh", "cloud_init"), ("docker",)),
    (True, PHASES, ()),
])
def test_a_vm_says_which_phases_of_up_it_still_lacks(docker: bool, done: tuple[str, ...] | None,
                                                     missing: tuple[str, ...]) -> None:
    record = _record(phases=done)
    record = replace(record, spec=replace(record.spec, docker=docker))
    machine = Machine(object(), "web", record)  # type: ignore[arg-type]
    assert machine.missing_phases == missing
