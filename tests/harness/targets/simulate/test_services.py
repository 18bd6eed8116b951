"""harness/targets/simulate/services.py: which service an OPEN names, and shell:, shell,v2: and exec:."""

from harness.targets import adb_wire as wire
from support.adb_sim import RawClient, adb_shell_device


def test_adb_shell_shell_exec_and_v2_exit_code(make_device):
    device = make_device()
    adb = adb_shell_device(device.address)
    assert adb.shell("echo out; echo err >&2") == "out\nerr\n"  # v1: merged
    assert adb.shell("pwd").strip() == "/data/local/tmp"  # confined: the device's folder, as the board's
    assert adb.exec_out("printf 'a\\nb'") == "a\nb"
    raw = adb._service(b"shell,v2,raw", b"echo out; echo err >&2; exit 5", decode=False)
    assert wire.parse_shell_v2(raw) == (b"out\n", b"err\n", 5)
    killed = adb._service(b"shell,v2,raw", b"kill -9 $$", decode=False)
    assert wire.parse_shell_v2(killed)[2] == 128 + 9
    adb.close()


def test_legacy_device_refuses_shell_v2(make_device):
    device = make_device(features=())
    client = RawClient(device.address)
    _, banner = client.connect()
    assert banner.endswith(b"features=")
    assert client.open(1, b"shell,v2,raw:echo hi").name == "CLSE"
    assert client.open(2, b"shell:echo hi").name == "OKAY"
