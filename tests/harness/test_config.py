"""harness/config.py: experiment files are validated once, with errors that name the key and file."""

import pytest

from harness import config
from harness.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_defaults_cover_all_six_variants_on_the_local_target():
    exp = config.from_dict({})
    assert exp.quantize.variants == ("fp32", "dynamic", "float16", "int8", "int16x8", "mixed")
    assert exp.run.targets == ("local",) and exp.run.delegates == ("xnnpack",)
    assert exp.model.name == "small_cnn" and exp.data.dataset == "digits-groups"


def test_full_file_round_trips(tmp_path):
    path = write(tmp_path, """
[experiment]
name = "mine"
[data]
dataset = "data/faces.npz"
[model]
path = "m.keras"
[quantize]
variants = ["int8", "mixed"]
calibration_size = 64
calibration_strategy = "balanced"
mixed_layers_regex = "dense"
[run]
delegates = ["reference", "external:/opt/lib/libx.so,k=v"]
num_threads = 1
batch_size = 8
""")
    exp = config.load(path)
    assert exp.name == "mine"
    assert exp.data.dataset == str(tmp_path / "data/faces.npz")
    assert exp.model.path == str(tmp_path / "m.keras") and exp.model.name is None
    assert exp.quantize.variants == ("int8", "mixed")
    assert exp.quantize.calibration_strategy == "balanced"
    assert exp.run.delegates == ("reference", "external:/opt/lib/libx.so,k=v")
    assert exp.run.batch_size == 8


@pytest.mark.parametrize("text, needle", [
    ("[quantize]\nvariants = ['int4']", "unknown variant 'int4'; known: fp32, dynamic"),
    ("[quantize]\nvariant = ['int8']", "unknown key(s) in [quantize]: ['variant']"),
    ("[runn]\nx = 1", "unknown table(s) ['runn']"),
    ("[run]\ndelegates = ['gpuu']", "unknown delegate 'gpuu'"),
    ("[run]\nbatch_size = 'big'", "[run] batch_size must be an integer, got str 'big'"),
    ("[run]\nbatch_size = 0", "must be >= 1"),
    ("[run]\ntargets = ['=x']", "empty device name or label selector"),
    ("[quantize]\ncalibration_strategy = 'stratfied'", "unknown calibration_strategy 'stratfied'"),
    ("[model]\nname = 'small_cnn'\npath = 'x.keras'", "give name or path, not both"),
    ("[run\n", "is not valid TOML"),
])
def test_bad_files_name_the_problem_and_the_file(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert needle in str(err.value)
    if "TOML" not in needle:
        assert str(path) in str(err.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_the_shipped_example_is_valid():
    from pathlib import Path

    exp = config.load(Path(__file__).resolve().parents[2] / "examples" / "digits.toml")
    assert exp.name == "digits" and exp.run.delegates == ("xnnpack", "reference")


def test_the_shipped_edgetpu_example_is_valid_and_selects_the_coral():
    from pathlib import Path

    from harness.farm.inventory import load_inventory

    examples = Path(__file__).resolve().parents[2] / "examples"
    exp = config.load(examples / "edgetpu.toml")
    assert (exp.quantize.fixed_batch, exp.run.repeat) == (1, 3)
    chosen = load_inventory(examples / "devices.toml").select(exp.run.targets)
    assert [d.name for d in chosen] == ["coral"] and chosen[0].profile == "edgetpu"


@pytest.mark.parametrize("section, key, value, needle", [
    ("run", "repeat", 0, "repeat must be >= 1"),
    ("quantize", "fixed_batch", -1, "fixed_batch must be 0"),
    ("run", "shard_samples", 0, r"\[run\] shard_samples must be an integer >= 1, got 0"),
])
def test_repeat_and_fixed_batch_are_checked(section, key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        config.from_dict({section: {key: value}}, source="t")


def test_shard_samples_defaults_to_4096_and_is_read():
    assert config.from_dict({}, source="t").run.shard_samples == 4096
    assert config.from_dict({"run": {"shard_samples": 100}}, source="t").run.shard_samples == 100


@pytest.mark.parametrize("text, needle", [
    ("[run]\nnum_threads = true", "[run] num_threads must be an integer, got bool True"),
    ("[run]\nallow_unproven = 'false'", "[run] allow_unproven must be true or false, got str 'false'"),
    ("[run]\nallow_unproven = 0", "[run] allow_unproven must be true or false, got int 0"),
    ("[run]\nnum_threads = 2.0", "[run] num_threads must be an integer, got float 2.0"),
    ("[quantize]\nseed = '0'", "[quantize] seed must be an integer, got str '0'"),
    ("[quantize]\ncalibration_size = false", "[quantize] calibration_size must be an integer, got bool"),
    ("[model]\npath = 5", "[model] path must be a string, got int 5"),
    ("[model]\nname = true", "[model] name must be a string, got bool True"),
    ("[run]\ndevices_file = ['a']", "[run] devices_file must be a string, got list"),
    ("[run]\ndelegates = [1, 2]", "[run] delegates must be a list of strings, got list [1, 2]"),
    ("[run]\ntargets = true", "[run] targets must be a list of strings, got bool True"),
    ("[experiment]\nname = 7", "[experiment] name must be a string, got int 7"),
    ("[data]\ndataset = 1.5", "[data] dataset must be a string, got float 1.5"),
])
def test_every_option_is_type_checked_naming_file_key_and_type(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)
