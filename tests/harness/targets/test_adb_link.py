"""harness/targets/adb_link.py: the device banner parsed as AOSP does."""

from __future__ import annotations

from harness.targets.adb_link import DeviceBanner


def test_banner_parsing():
    banner = DeviceBanner.parse(b"device::ro.product.name=p;ro.product.model=M 1;features=shell_v2,cmd\0")
    assert banner.kind == "device" and banner.props["ro.product.model"] == "M 1"
    assert banner.features == {"shell_v2", "cmd"}
    assert DeviceBanner.parse(b"device::ro.product.name=p;features=").features == frozenset()
