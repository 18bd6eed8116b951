"""Type checks of a device inventory (``devices.toml``) entry, as ``harness.config`` checks an experiment.

TOML keeps ``true``/``false`` apart from numbers and strings, and so does this check: ``true`` is
no ``max_payload``, ``"false"`` is no ``auth`` (``bool("false")`` would have been True), and a number
is no ``address``. Each wrong value is one ConfigError naming the file, the device, the key and the
expected type::

    devices.toml: device #2 ('sim'): auth must be true or false, got str 'false'

Unknown keys are refused too, with the list of known ones.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.errors import ConfigError

STRING_KEYS = ("name", "reach", "address", "serial", "server", "runner", "python", "workdir",
               "benchmark_model", "profile", "board", "pool")
LIST_KEYS = ("delegates", "features")  # lists of strings
INT_KEYS = ("max_payload",)
BOOL_KEYS = ("auth",)
TABLE_KEYS = ("labels",)  # a table of key = "value" (a number is kept as its text)
KNOWN_KEYS = frozenset(STRING_KEYS + LIST_KEYS + INT_KEYS + BOOL_KEYS + TABLE_KEYS)


def check_device_table(table: Mapping[str, Any], where: str) -> None:
    """ConfigError naming ``where`` (file and device) for an unknown key or a value of the wrong type.

    >>> check_device_table({"name": "sim", "reach": "simulated", "auth": False}, "devices.toml: device #1")
    >>> check_device_table({"name": "sim", "max_payload": True}, "devices.toml: device #1")
    Traceback (most recent call last):
    ...
    harness.errors.ConfigError: devices.toml: device #1 ('sim'): max_payload must be an integer, got bool True
    """
    name = table.get("name")
    if isinstance(name, str):
        where = f"{where} ({name!r})"
    unknown = set(table) - KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    for key, value in table.items():
        expected = _mismatch(key, value)
        if expected:
            raise ConfigError(f"{where}: {key} must be {expected}, got {type(value).__name__} {value!r}")


def _mismatch(key: str, value: Any) -> str:
    """What ``key`` expects if ``value`` does not have that type, else ""."""
    if key in STRING_KEYS:
        return "" if isinstance(value, str) else "a string"
    if key in INT_KEYS:  # bool is an int in Python, not in TOML
        return "" if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if key in BOOL_KEYS:
        return "" if isinstance(value, bool) else "true or false"
    if key in LIST_KEYS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return "" if ok else "a list of strings"
    ok = isinstance(value, Mapping) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value.values())
    return "" if ok else "a table of key = \"value\" (strings or numbers)"
