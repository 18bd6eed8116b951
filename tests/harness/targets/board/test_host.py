"""Host checks fail with one line naming the missing tool or setting and what fixes it."""

import os
import stat

import pytest

from harness.targets.board import host
from harness.targets.board.spec import BoardError, arch_profile


def _fake_tool(folder, name, script):
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("arch, qemu", [("aarch64", "qemu-aarch64-static"), ("armv7l", "qemu-arm-static")])
def test_no_qemu_on_path_names_the_package(tmp_path, arch, qemu):
    with pytest.raises(BoardError) as err:
        host.require_qemu(arch_profile(arch), path=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{qemu} not found on PATH") and "apt-get install -y qemu-user-static" in msg


def test_architecture_not_enabled_names_the_commands(tmp_path, monkeypatch):
    _fake_tool(tmp_path, "dpkg", 'case "$1" in --print-architecture) echo amd64;; *) echo i386;; esac\n')
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ["PATH"])
    with pytest.raises(BoardError) as err:
        host.require_dpkg_arch(arch_profile("armv7l"))
    assert "Debian architecture armhf is not enabled" in str(err.value)
    assert "`dpkg --add-architecture armhf && apt-get update`" in str(err.value)
    _fake_tool(tmp_path, "dpkg", 'case "$1" in --print-architecture) echo amd64;; *) echo arm64 armhf;; esac\n')
    host.require_dpkg_arch(arch_profile("armv7l"))  # enabled: no error


def test_apt_error_names_the_package():
    stderr = ("W: Download is performed unsandboxed\n"
              "E: Can't select candidate version from package media-types:arm64 as it has no candidate\n")
    err = host.apt_error(stderr, ("dash:arm64", "media-types:arm64"), arch_profile("aarch64"))
    assert str(err).startswith("apt-get download failed for media-types:arm64: Can't select")
    assert "dpkg --add-architecture arm64 && apt-get update" in str(err) and "\n" not in str(err)
    err = host.apt_error("E: Unable to locate package nosuch:armhf\n", ("nosuch:armhf",), arch_profile("armv7l"))
    assert str(err).startswith("apt-get download failed for nosuch:armhf")


def test_pip_error_names_requirement_and_platform():
    out = ("ERROR: Could not find a version that satisfies the requirement ai-edge-litert==2.3.0\n"
           "ERROR: No matching distribution found for ai-edge-litert==2.3.0\n")
    err = host.pip_error(out, ("ai-edge-litert==2.3.0",), arch_profile("armv7l").pip_platforms, "3.11")
    msg = str(err)
    assert msg.startswith("pip found no wheel of ai-edge-litert==2.3.0 for CPython 3.11 on manylinux_2_17_armv7l")
    assert "--runtime" in msg and "\n" not in msg


def test_missing_apt_names_its_package(tmp_path):
    with pytest.raises(BoardError, match=r"apt-get not found on PATH .*install Debian's apt"):
        host.require_tool("apt-get", "it fetches packages", path=str(tmp_path))
