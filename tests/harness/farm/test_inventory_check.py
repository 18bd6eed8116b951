"""harness/farm/inventory_check.py: devices.toml is type-checked like the experiment file; each wrong
value is one ConfigError naming the file, the device, the key and the expected type."""

import pytest

from harness.errors import ConfigError
from harness.farm.inventory import load_inventory


def _inventory(tmp_path, entry: str):
    path = tmp_path / "devices.toml"
    path.write_text('[[device]]\nname = "ok"\nreach = "local"\n\n[[device]]\nname = "sim"\n'
                    f'reach = "simulated"\n{entry}\n')
    return path


@pytest.mark.parametrize("entry, message", [
    ('max_payload = "65536"', "max_payload must be an integer, got str '65536'"),  # a string for an int
    ("max_payload = true", "max_payload must be an integer, got bool True"),        # true is no integer
    ('auth = "false"', "auth must be true or false, got str 'false'"),              # "false" is no boolean
    ("auth = 0", "auth must be true or false, got int 0"),
    ("workdir = 5", "workdir must be a string, got int 5"),
    ('delegates = "xnnpack"', "delegates must be a list of strings, got str 'xnnpack'"),
    ("features = [1, 2]", "features must be a list of strings, got list [1, 2]"),
    ("labels = { fast = true }", "labels must be a table of key = \"value\""),
    ('labels = "soc=x"', "labels must be a table"),
])
def test_a_wrong_type_names_the_file_the_device_the_key_and_the_type(tmp_path, entry, message):
    path = _inventory(tmp_path, entry)
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    assert str(err.value).startswith(f"{path}: device #2 ('sim'): ")
    assert message in str(err.value)


def test_a_name_that_is_not_a_string_is_named_too(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text("[[device]]\nname = 7\nreach = \"local\"\n")
    with pytest.raises(ConfigError, match=r"device #1: name must be a string, got int 7"):
        load_inventory(path)


def test_unknown_keys_are_refused_with_the_known_ones(tmp_path):
    path = _inventory(tmp_path, 'adress = "127.0.0.1:5555"')
    with pytest.raises(ConfigError, match=r"device #2 \('sim'\): unknown key\(s\) \['adress'\]; known: .*'address'"):
        load_inventory(path)


def test_the_right_types_still_load(tmp_path):
    path = _inventory(tmp_path, 'max_payload = 4096\nauth = false\nfeatures = []\n'
                                'labels = { soc = "x", ram_gb = 8 }\ndelegates = ["xnnpack"]')
    sim = load_inventory(path).get("sim")
    assert (sim.max_payload, sim.auth, sim.features, sim.delegates) == (4096, False, (), ("xnnpack",))
    assert sim.labels == {"soc": "x", "ram_gb": "8"}
