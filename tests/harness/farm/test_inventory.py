"""The device inventory: parsing, clear errors, and selection by name or label."""

import pytest

from harness.farm import inventory
from harness.errors import ConfigError

FILE = """
[[device]]
name = "pixel7"
reach = "adb-tcp"
address = "192.168.1.20:5555"
delegates = ["xnnpack", "reference"]
labels = { soc = "tensor-g2", os = "android" }

[[device]]
name = "rpi4"
reach = "adb-usb"
serial = "ABC123"
workdir = "/home/pi/qskew"
labels = { soc = "bcm2711", os = "linux" }

[[device]]
name = "old-board"
reach = "simulated"
python = "venv/bin/python"
features = []
max_payload = 4096
labels = { os = "linux" }
"""


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(FILE)
    return inventory.load_inventory(path)


def test_a_file_adds_its_devices_to_the_builtins(inv, tmp_path):
    assert [d.name for d in inv.devices] == ["pixel7", "rpi4", "old-board", "local", "simulated"]
    pixel = inv.get("pixel7")
    assert (pixel.reach, pixel.address, pixel.workdir, pixel.python) == \
        ("adb-tcp", "192.168.1.20:5555", "/data/local/tmp/qskew", "python3")
    old = inv.get("old-board")
    assert old.features == () and old.max_payload == 4096
    assert old.python == str(tmp_path / "venv/bin/python")  # relative host paths: from the file's folder


def test_selection_by_name_and_label_keeps_inventory_order(inv):
    assert [d.name for d in inv.select(["os=linux"])] == ["rpi4", "old-board", "local", "simulated"]
    assert [d.name for d in inv.select(["local", "soc=tensor-g2"])] == ["pixel7", "local"]
    assert [d.name for d in inv.select(["reach=simulated", "old-board"])] == ["old-board", "simulated"]


def test_a_selector_that_matches_nothing_is_an_error(inv):
    with pytest.raises(ConfigError, match=r"no label matches 'soc=exynos'; devices: pixel7, rpi4"):
        inv.select(["soc=exynos"])
    with pytest.raises(ConfigError, match=r"no device named 'pixle7'|no device matches 'pixle7'"):
        inv.select(["pixle7"])


def test_delegates_offered(inv):
    assert inv.get("pixel7").offers("reference") and not inv.get("pixel7").offers("builtin")
    assert inv.get("rpi4").offers("external:/x/libedgetpu.so.1")  # no list: anything


def test_without_a_file_only_the_builtins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(inventory.ENV_DEVICES, raising=False)
    assert [d.name for d in inventory.load_inventory(None).devices] == ["local", "simulated"]
    (tmp_path / "devices.toml").write_text('[[device]]\nname = "x"\nreach = "local"\n')
    assert inventory.load_inventory(None).get("x").reach == "local"  # ./devices.toml is picked up


@pytest.mark.parametrize("text, needle", [
    ('[[device]]\nname = "a"\nreach = "ssh"', "reach must be one of adb-tcp, adb-usb, local, simulated"),
    ('[[device]]\nname = "a"\nreach = "adb-tcp"', "adb-tcp needs address"),
    ('[[device]]\nname = "a"\nreach = "adb-tcp"\naddress = "host"', "adb-tcp needs address"),
    ('[[device]]\nname = "a"\nreach = "adb-usb"', "adb-usb needs serial"),
    ('[[device]]\nname = "a"\nreach = "local"\nmax_payload = 4096', "only applies to reach"),
    ('[[device]]\nname = "a"\nreach = "local"\ndelegates = ["gpuu"]', "unknown delegate 'gpuu'"),
    ('[[device]]\nname = "a"\nreach = "local"\nrunner = "apk"', "unknown runner 'apk'"),
    ('[[device]]\nname = "a"\nreach = "local"\nport = 1', "unknown key(s) ['port']"),
    ('[[device]]\nname = "a"\nreach = "local"\nrunner = "benchmark_model"', "needs benchmark_model ="),
    ('[[device]]\nname = "a"\nreach = "local"\nbenchmark_model = "standin"', "only applies to runner"),
    ('[[device]]\nname = "a"\nreach = "local"\nprofile = "tpu"', "unknown profile 'tpu'"),
    ('[[device]]\nreach = "local"', "needs a name"),
    ('[[device]]\nname = "a"\nreach = "local"\n[[device]]\nname = "a"\nreach = "local"', "used twice: a"),
    ('[device]\nname = "a"', "array of tables"),
    ('[[device]\n', "cannot be read"),
])
def test_bad_inventories_name_the_file_and_the_device(tmp_path, text, needle):
    path = tmp_path / "devices.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        inventory.load_inventory(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        inventory.load_inventory(tmp_path / "nope.toml")


def test_the_shipped_example_inventory_loads():
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "devices.toml"
    inv = inventory.load_inventory(example)
    assert [d.name for d in inv.select(["accelerator=none"])] == ["pixel7", "rpi4", "old-board", "sim-phone"]
    assert [d.name for d in inv.select(["runner=benchmark_model"])] == ["galaxy-s23", "sim-phone"]
    assert inv.get("coral").profile == "edgetpu"
    assert inv.get("old-board").python.endswith(".venv-board/bin/python")


def test_benchmark_model_devices_and_profiles(tmp_path):
    binary = tmp_path / "bin" / "android_aarch64_benchmark_model"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF")
    path = tmp_path / "devices.toml"
    path.write_text('[[device]]\nname = "phone"\nreach = "adb-tcp"\naddress = "10.0.0.2:5555"\n'
                    'runner = "benchmark_model"\nbenchmark_model = "bin/android_aarch64_benchmark_model"\n'
                    'delegates = ["xnnpack", "gpu", "nnapi:qti-dsp"]\n'
                    '[[device]]\nname = "coral"\nreach = "adb-tcp"\naddress = "10.0.0.3:5555"\n'
                    'profile = "edgetpu"\ndelegates = ["edgetpu:usb", "reference"]\n')
    inv = inventory.load_inventory(path)
    phone = inv.get("phone")
    assert phone.benchmark_model == str(binary)  # relative to the inventory file
    assert phone.offers("nnapi:qti-dsp") and phone.offers("gpu") and not phone.offers("hexagon")
    assert [d.name for d in inv.select(["runner=benchmark_model"])] == ["phone"]
    assert [d.name for d in inv.select(["profile=edgetpu"])] == ["coral"]
    assert phone.to_json()["benchmark_model"] == str(binary) and inv.get("coral").to_json()["profile"] == "edgetpu"


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", ".", "lab\\\\phone", "nul\\u0000byte", "esc\\u001b[2J"])
def test_device_names_that_would_escape_their_folder_are_refused(tmp_path, name):
    path = tmp_path / "devices.toml"
    path.write_text(f'[[device]]\nname = "{name}"\nreach = "simulated"\n')
    with pytest.raises(ConfigError, match="may not hold .* NUL or other control characters: it becomes a folder"
                       ) as err:
        inventory.load_inventory(path)
    assert str(path) in str(err.value) and "\x1b" not in str(err.value) and "\0" not in str(err.value)


def test_a_simulated_device_folder_is_never_made_from_an_unsafe_name():
    from harness.farm.connect import simulated_root

    with pytest.raises(ConfigError, match="becomes a folder name"):
        simulated_root("../outside")
    assert simulated_root("pixel 7 (lab)").name == "pixel 7 (lab)"


def test_board_devices_from_a_file_and_on_demand(tmp_path):
    (tmp_path / "b").mkdir()
    path = tmp_path / "devices.toml"
    path.write_text('[[device]]\nname = "a64"\nreach = "board"\nboard = "aarch64"\n\n'
                    '[[device]]\nname = "mine"\nreach = "board"\nboard = "b"\n')
    inv = inventory.load_inventory(path)
    a64, mine = inv.get("a64"), inv.get("mine")
    assert (a64.board, a64.workdir, a64.python) == ("aarch64", "/data/local/tmp/qskew", "python3")
    assert mine.board == str(tmp_path / "b")  # a folder, relative to the inventory file
    on_demand = inv.select(["local", "board-armv7l"])
    assert [(d.name, d.reach, d.board) for d in on_demand] == [("local", "local", ""),
                                                               ("board-armv7l", "board", "armv7l")]
    assert "board-aarch64" not in inv.names()  # devices check does not build every board
    with pytest.raises(ConfigError, match="no device matches 'board-sparc'"):
        inv.select(["board-sparc"])


def test_board_entries_are_checked(tmp_path):
    with pytest.raises(ConfigError, match='reach = "board" needs board'):
        inventory.from_dict({"device": [{"name": "x", "reach": "board"}]})
    with pytest.raises(ConfigError, match='board only applies to reach = "board"'):
        inventory.from_dict({"device": [{"name": "x", "reach": "local", "board": "aarch64"}]})


def test_an_adb_server_device_needs_a_serial_and_takes_a_server():
    from_dict = inventory.from_dict
    inv = from_dict({"device": [{"name": "p", "reach": "adb-server", "serial": "R58M", "server": "lab:5038"}]})
    spec = inv.get("p")
    assert (spec.reach, spec.serial, spec.server, spec.workdir) == ("adb-server", "R58M", "lab:5038",
                                                                     "/data/local/tmp/qskew")
    assert spec.to_json()["server"] == "lab:5038"
    with pytest.raises(ConfigError, match="adb-server needs serial"):
        from_dict({"device": [{"name": "p", "reach": "adb-server"}]})
    with pytest.raises(ConfigError, match="server only applies to reach = \"adb-server\""):
        from_dict({"device": [{"name": "p", "reach": "adb-usb", "serial": "x", "server": "h:1"}]})
    with pytest.raises(ConfigError, match="server must be \"host:port\""):
        from_dict({"device": [{"name": "p", "reach": "adb-server", "serial": "x", "server": "lab"}]})


def test_a_pool_label_groups_devices_and_a_selector_may_name_the_pool(tmp_path):
    from harness.farm.inventory import from_dict

    inv = from_dict({"device": [{"name": "p1", "reach": "adb-usb", "serial": "S1", "pool": "pixels"},
                                {"name": "p2", "reach": "adb-usb", "serial": "S2", "pool": "pixels"},
                                {"name": "bench", "reach": "local"}]})
    assert [d.name for d in inv.select(["pixels"])] == ["p1", "p2"]
    assert [d.name for d in inv.select(["pool=pixels"])] == ["p1", "p2"]
    assert [d.group for d in inv.select(["pixels", "bench"])] == ["pixels", "pixels", "bench"]
    assert inv.get("p1").to_json()["pool"] == "pixels"


@pytest.mark.parametrize("devices, message", [
    ([{"name": "p1", "reach": "local", "pool": "bench"}, {"name": "bench", "reach": "local"}],
     "pool name(s) also used as a device name: bench"),
    ([{"name": "p1", "reach": "local", "pool": "a=b"}], "pool must be a name"),
    ([{"name": "p1", "reach": "local", "pool": "../up"}], "may not hold"),
])
def test_a_bad_pool_name_is_one_error_naming_it(devices, message):
    from harness.errors import ConfigError
    from harness.farm.inventory import from_dict

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict({"device": devices}, source="devices.toml")
