"""The boot lab's pure core: parsing guest reports, summaries, the table, the chart, profiles."""

from __future__ import annotations

from typing import Any

import pytest

from vmctl.errors import ConfigError
from vmctl.lab.data import (
    BOOT_TO_SSH,
    PHASES,
    cloud_init_blame,
    comparison,
    phases_of,
    seconds,
    stats,
    summary,
    systemd_blame,
    systemd_time,
    table,
)
from vmctl.lab.run import LabConfig
from vmctl.model.profiles import profile
from vmctl.model.spec import MachineSpec


def test_stats_nearest_rank() -> None:
    assert stats([3.0, 1.0, 2.0]) == {"median": 2.0, "p95": 3.0, "min": 1.0, "max": 3.0, "n": 3}
    twenty = stats(float(i) for i in range(1, 21))
    assert twenty["p95"] == 19.0 and twenty["median"] == 10.5
    assert stats([5.0])["p95"] == 5.0
    with pytest.raises(ValueError):
        stats([])


@pytest.mark.parametrize("text,value", [("845ms", 0.845), ("9.220s", 9.22), ("1min 2.353s", 62.353),
                                        ("1h 2min", 3720.0), ("2min", 120.0), ("512us", 0.000512),
                                        ("1.2s 30ms", 1.23)])
def test_systemd_durations(text: str, value: float) -> None:
    assert seconds(text) == value


def test_systemd_duration_rejects_words() -> None:
    with pytest.raises(ValueError):
        seconds("in 10s")


def test_systemd_time_with_and_without_firmware() -> None:
    plain = "Startup finished in 9.220s (kernel) + 1min 2.353s (userspace) = 1min 11.573s \ngraphical.target ..."
    assert systemd_time(plain) == {"kernel": 9.22, "userspace": 62.353, "total": 71.573}
    full = "Startup finished in 1.2s (firmware) + 845ms (loader) + 9.2s (kernel) + 20s (userspace) = 31.245s"
    assert systemd_time(full)["loader"] == 0.845
    assert systemd_time("Bootup is not yet finished.") == {}


def test_blames() -> None:
    systemd = "16.934s cloud-init-local.service\n  885ms dbus.service\nnoise\n"
    assert systemd_blame(systemd) == [{"unit": "cloud-init-local.service", "seconds": 16.934},
                                      {"unit": "dbus.service", "seconds": 0.885}]
    ci = "-- Boot Record 01 --\n     04.23600s (init-network/config-growpart)\n     00.05000s (modules-final/x)\n"
    assert cloud_init_blame(ci, top=1) == [{"event": "init-network/config-growpart", "seconds": 4.236}]


def test_phases_merge_up_and_console_in_boot_order() -> None:
    marks = {"define": 0.1, "start": 0.4, "ip": 30.0, "ssh_banner": 40.0, "ssh": 41.0, "cloud_init": 50.0}
    phases = phases_of(marks, {"kernel": 1.5, "userspace": 7.0, "login": 60.0})
    assert list(phases) == ["define", "qemu_started", "kernel", "userspace", "address", "ssh_banner",
                            "ssh_login", "cloud_init", BOOT_TO_SSH]
    assert phases[BOOT_TO_SSH] == 40.9


def _run(profile_name: str, ssh: float) -> dict[str, Any]:
    return {"profile": profile_name, "phases": phases_of({"define": 1.0, "start": 1.5, "ssh": ssh}, {})}


def test_summary_per_profile_and_comparison() -> None:
    runs = [_run("stock", 51.0), _run("fast", 26.0), _run("stock", 61.0), _run("fast", 24.0)]
    summ = summary(runs)
    assert list(summ) == ["stock", "fast"]
    assert summ["stock"][BOOT_TO_SSH]["median"] == 55.0 and summ["fast"][BOOT_TO_SSH]["n"] == 2
    assert "docker" not in summ["stock"]
    assert comparison(summ) == {"fast_over_stock": 0.436}
    assert comparison({"fast": summ["fast"]}) == {}


def test_table_names_every_measured_phase_and_what_was_not_measured() -> None:
    runs = [_run("stock", 51.0), _run("fast", 26.0)]
    summ = summary(runs)
    result = {"accel": "tcg", "config": {"runs": 1, "image": "debian-12"}, "summary": summ,
              "comparison": comparison(summ),
              "containers": {"vm": {"runs": [0.5, 0.7], "summary": stats([0.5, 0.7])},
                             "host": {"runs": [], "summary": None, "reason": "no Docker Engine answers"}}}
    text = "\n".join(table(result))
    assert "accelerator: tcg" in text and "SSH login" in text and "boot to SSH" in text
    assert "fast over stock: 0.50" in text
    assert "container start (vm, docker run --rm, n=2): median 0.60s" in text
    assert "container start (host): not measured: no Docker Engine answers" in text


def test_a_failed_run_is_reported_and_left_out_of_the_statistics() -> None:
    failed = {"profile": "fast", "run": 2, "phases": {}, "error": "t1: no address after 300 s"}
    runs = [{**_run("stock", 51.0), "run": 1}, {**_run("fast", 26.0), "run": 1}, failed]
    summ = summary(runs)
    assert summ["fast"][BOOT_TO_SSH]["n"] == 1 and comparison(summ) == {"fast_over_stock": 0.5}
    result = {"accel": "tcg", "config": {"runs": 2, "image": "debian-12"}, "summary": summ, "runs": runs,
              "comparison": comparison(summ), "containers": {}}
    assert "fast run 2 failed: t1: no address after 300 s" in table(result)


def test_plot_refuses_what_is_not_a_lab_result() -> None:
    from vmctl.lab.plot import check_result

    with pytest.raises(ConfigError, match="x.json is not a result of 'vmctl lab boot' \\(no accel, summary"):
        check_result({"config": {}, "containers": {}}, "x.json")
    with pytest.raises(ConfigError, match="no accel, config, summary, containers"):
        check_result([1, 2], "y.json")


def test_plot_is_a_png_and_refuses_mixed_accelerators() -> None:
    from vmctl.lab.plot import plot

    runs = [_run("stock", 51.0), _run("fast", 26.0)]
    result = {"accel": "tcg", "config": {"runs": 1}, "summary": summary(runs), "warm": {"summary": stats([3.0])},
              "containers": {"vm": {"summary": stats([0.5, 0.7])}, "host": {"summary": None}}}
    png = plot([result])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    with pytest.raises(ConfigError, match="mix accelerators"):
        plot([result, {**result, "accel": "kvm"}])


def test_lab_config_checks_its_input() -> None:
    assert LabConfig(profiles=("stock", "fast")).runs == 3
    for bad, match in [({"runs": 0}, "runs 0"), ({"profiles": ("slow",)}, "unknown profile 'slow'"),
                       ({"profiles": ("fast", "fast")}, "given twice"), ({"image": "Bad_Name"}, "invalid image"),
                       ({"containers": -1}, "container runs"), ({"cpus": 0}, "vCPUs")]:
        with pytest.raises(ConfigError, match=match):
            LabConfig(**bad)  # type: ignore[arg-type]


def test_fast_profile_boots_the_kernel_and_trims_cloud_init() -> None:
    fast = profile("fast")
    assert fast.boot == "kernel"
    cmdline = fast.cmdline("root=LABEL=x ro")
    assert cmdline.startswith("root=LABEL=x ro ")
    # SSH first: both cloud-init stages before sshd are masked, the image's own units take over
    for arg in ("systemd.mask=cloud-init.service", "systemd.mask=cloud-init-local.service",
                "systemd.wants=vmctl-fast-boot.service", "systemd.wants=vmctl-cloud-init.service"):
        assert arg in cmdline.split()
    assert fast.meta_data == {"dsmode": "local"}
    assert "growpart" not in fast.cloud_config["cloud_init_modules"]
    assert "users_groups" in fast.cloud_config["cloud_init_modules"]
    assert "ssh" not in fast.cloud_config["cloud_init_modules"]  # the key is in place before sshd
    assert profile("stock").cmdline("a b") == "a b" and not profile("stock").cloud_config
    # the user's own module list replaces the profile's (see lifecycle.up)
    mine = fast.under({"cloud_final_modules": ["x"], "packages": ["htop"]})
    assert mine["cloud_final_modules"] == ["x"] and mine["packages"] == ["htop"]
    assert mine["cloud_init_modules"] == fast.cloud_config["cloud_init_modules"]


def test_machine_spec_profile() -> None:
    assert MachineSpec("a", profile="fast").boot == "kernel"
    assert MachineSpec("a").boot == "disk" and MachineSpec("a").profile == "stock"
    with pytest.raises(ConfigError, match="unknown profile"):
        MachineSpec("a", profile="turbo")
    assert MachineSpec.from_dict({"name": "old", "boot": "disk"}).profile == "stock"  # records from before profiles
    # the library refuses the contradiction the CLI refuses, instead of booting the kernel silently
    with pytest.raises(ConfigError, match="profile 'fast' needs boot mode 'kernel', not 'disk'"):
        MachineSpec("a", profile="fast", boot="disk")
    assert MachineSpec("a", profile="fast", boot="kernel").boot == "kernel"
    assert MachineSpec("a", boot="kernel").boot == "kernel"
    assert MachineSpec.from_dict(MachineSpec("a", profile="fast").to_dict()) == MachineSpec("a", profile="fast")


def test_phase_list_is_the_issue_s_order() -> None:
    assert PHASES.index("kernel") < PHASES.index("userspace") < PHASES.index("address") < PHASES.index("ssh_banner")
