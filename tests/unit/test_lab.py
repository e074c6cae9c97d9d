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


def _run(profile_name: str, ssh: float, ready: float | None = None) -> dict[str, Any]:
    marks = {"define": 1.0, "start": 1.5, "ssh": ssh, **({"ready": ready} if ready else {})}
    return {"profile": profile_name, "phases": phases_of(marks, {})}


def test_ready_and_docker_ready_are_phases_and_ready_is_compared() -> None:
    marks = {"define": 0.1, "start": 0.4, "ip": 10.0, "ssh": 15.0, "cloud_init": 16.0, "docker": 17.5, "ready": 18.0}
    phases = phases_of(marks, {})
    assert list(phases)[-4:] == ["cloud_init", "docker_ready", "ready", BOOT_TO_SSH]
    summ = summary([_run("stock", 45.0, 60.0), _run("fast", 15.0, 18.0)])
    assert comparison(summ) == {"fast_over_stock": 0.318, "fast_over_stock_ready": 0.3}
    text = "\n".join(table({"accel": "tcg", "config": {"runs": 1, "image": "x"}, "summary": summ,
                            "comparison": comparison(summ), "containers": {}}))
    assert "ready (up returned)" in text
    assert "fast over stock: 0.32 (median boot to SSH)" in text and "fast over stock: 0.30 (median ready)" in text


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


def test_fast_profile_boots_the_kernel_and_runs_cloud_init_only_for_user_data() -> None:
    fast = profile("fast")
    assert fast.boot == "kernel" and fast.ready_unit == "vmctl-ready.target" and fast.host_grows_root
    cmdline = fast.cmdline("root=LABEL=x ro")  # no user-data: no cloud-config for cloud-init
    assert cmdline.startswith("root=LABEL=x ro ")
    # SSH first: both cloud-init stages before sshd are masked, the image's own units take over
    for arg in ("systemd.mask=cloud-init.service", "systemd.mask=cloud-init-local.service",
                "systemd.wants=vmctl-fast-boot.service", "systemd.wants=vmctl-ready.target",
                "cloud-init=disabled"):  # no user-data: no cloud-init at all
        assert arg in cmdline.split()
    assert "systemd.wants=vmctl-cloud-init.service" not in cmdline.split()
    with_user_data = fast.cmdline("root=LABEL=x ro", fast.under({"write_files": []})).split()
    assert "systemd.wants=vmctl-cloud-init.service" in with_user_data and "cloud-init=disabled" not in with_user_data
    # cloud-init's own units stay masked (from 24.3 they need its masked main process)
    assert {"systemd.mask=cloud-init-main.service", "systemd.mask=cloud-init-network.service",
            "systemd.mask=cloud-config.service", "systemd.mask=cloud-final.service"} <= set(with_user_data)
    # a stage left with nothing to run is not started: write_files is the init stage's
    assert not [a for a in with_user_data if a.startswith("systemd.wants=vmctl-cloud-") and "init" not in a]
    deferred = fast.under({"write_files": [{"path": "/x", "defer": True}]})
    assert deferred["cloud_init_modules"] == ["write_files"]
    assert deferred["cloud_final_modules"] == ["write_files_deferred"]
    everything = fast.cmdline("root=LABEL=x ro", fast.under({"snap": {}})).split()  # a key vmctl does not map
    assert {"systemd.wants=vmctl-cloud-config.service", "systemd.wants=vmctl-cloud-final.service"} <= set(everything)
    runcmd = fast.cmdline("root=LABEL=x ro", fast.under({"runcmd": ["true"]})).split()
    assert "systemd.wants=vmctl-cloud-config.service" in runcmd  # runcmd's module is the config stage's
    assert "systemd.wants=vmctl-cloud-final.service" in runcmd  # scripts_user runs the commands
    assert fast.meta_data == {"dsmode": "local"}
    for modules in fast.cloud_config.values():  # vmctl's own work is done before cloud-init runs
        assert not {"growpart", "resizefs", "ssh"} & set(modules)
    assert profile("stock").cmdline("a b") == "a b" and not profile("stock").cloud_config
    # only the modules the user's keys need run
    mine = fast.under({"packages": ["htop"]})
    assert (mine["cloud_init_modules"], mine["cloud_config_modules"]) == ([], [])
    assert mine["cloud_final_modules"] == ["package_update_upgrade_install"] and mine["packages"] == ["htop"]
    runcmd = fast.under({"runcmd": [["true"]]}, {"write_files"})
    assert runcmd["cloud_init_modules"] == ["write_files"] and runcmd["cloud_config_modules"] == ["runcmd"]
    assert runcmd["cloud_final_modules"] == ["scripts_user"]
    # a key vmctl does not map keeps every module; the user's own module list replaces the profile's
    unknown = fast.under({"snap": {}, "cloud_final_modules": ["x"]})
    assert unknown["cloud_init_modules"] == fast.cloud_config["cloud_init_modules"]
    assert unknown["cloud_final_modules"] == ["x"]


def test_machine_spec_profile() -> None:
    assert MachineSpec("a", profile="fast").boot == "kernel"
    assert MachineSpec("a", profile="stock").boot == "disk"
    assert MachineSpec("a").profile == "" and MachineSpec("a").boot is None  # settled by up, with the image
    with pytest.raises(ConfigError, match="unknown profile"):
        MachineSpec("a", profile="turbo")
    assert MachineSpec.from_dict({"name": "old", "boot": "disk"}).profile == "stock"  # records from before profiles
    # the library refuses the contradiction the CLI refuses, instead of booting the kernel silently
    with pytest.raises(ConfigError, match="profile 'fast' needs boot mode 'kernel', not 'disk'"):
        MachineSpec("a", profile="fast", boot="disk")
    assert MachineSpec("a", profile="fast", boot="kernel").boot == "kernel"
    assert MachineSpec("a", boot="kernel", profile="stock").boot == "kernel"
    assert MachineSpec.from_dict(MachineSpec("a", profile="fast").to_dict()) == MachineSpec("a", profile="fast")
    # an existing VM keeps its profile when the request leaves it open, whatever the default is now
    stock_vm = MachineSpec("a", profile="stock", user="debian")
    assert MachineSpec("a").like(stock_vm) == stock_vm
    assert stock_vm.differences(MachineSpec("a", profile="fast").like(stock_vm)) == [
        "boot: 'disk' -> 'kernel'", "profile: 'stock' -> 'fast'"]


def test_phase_list_is_the_issue_s_order() -> None:
    assert PHASES.index("kernel") < PHASES.index("userspace") < PHASES.index("address") < PHASES.index("ssh_banner")


def test_pool_lab_reads_qemu_memory_and_compares_each_pool_with_one_vm() -> None:
    from vmctl.lab.data import pool_comparison, pool_table, smaps_rollup
    from vmctl.lab.pool import PoolLabConfig

    rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:              524288 kB\nPss:              500000 kB\n"
    assert smaps_rollup(rollup) == {"rss_mib": 512.0, "pss_mib": 488.3}
    sizes = [{"n": 1, "ready": [20.0], "total": 20.0, "errors": {},
              "memory": [{"vm": "a", "configured_mib": 1024, "rss_mib": 400.0, "pss_mib": 380.0}]},
             {"n": 3, "ready": [30.0, 33.0, 36.0], "total": 36.0, "errors": {}},
             {"n": 4, "ready": [40.0], "total": None, "errors": {"lab-p4-2": "no address after 300 s"}}]
    assert pool_comparison(sizes) == {"3_over_1": 1.8}  # a pool with a failed VM has no total
    text = "\n".join(pool_table({"accel": "tcg", "config": {"image": "x", "profile": "fast", "cpus": 1,
                                                            "memory_mib": 1024, "idle": 60}, "sizes": sizes,
                                 "comparison": pool_comparison(sizes)}))
    assert "3 over 1 VM: 1.80" in text and "lab-p4-2 failed: no address after 300 s" in text
    assert "each VM was given 1024 MiB" in text
    with pytest.raises(ConfigError, match="pool size 0 is out of range"):
        PoolLabConfig(sizes=(1, 0))
    with pytest.raises(ConfigError, match="no pool size"):
        PoolLabConfig(sizes=())
