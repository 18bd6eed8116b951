"""Sign-off policies: the TOML limits ``harness.signoff`` judges a run against (keys in its docstring)."""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from harness.errors import ConfigError

DEFAULT_POLICY = "default.toml"  # inside the harness.policies package data

# key -> (kind, description) for validation and error messages
POLICY_KEYS: dict[str, tuple[str, str]] = {
    "max_worst_group_drop": ("fraction", "largest allowed per-group accuracy drop, a fraction"),
    "max_psi": ("fraction", "largest allowed psi (group drop - overall drop), a fraction"),
    "judge_on_upper_bound": ("bool", "judge drop limits on the interval's upper bound"),
    "max_flip_rate_ratio": ("positive", "largest allowed group/majority flip-rate ratio"),
    "min_group_size": ("count", "smallest allowed test-set group"),
    "require_devices": ("names", "targets that must have finished jobs"),
    "require_delegates": ("names", "delegates that must have really run"),
    "attributes": ("names", "group attributes whose groups decide PASS/FAIL (default: every single one)"),
    "allow_failed_jobs": ("bool", "planned jobs that failed or are missing give WARN, not FAIL"),
}


@dataclass(frozen=True)
class Policy:
    """Validated sign-off limits; None = not judged."""

    max_worst_group_drop: float | None = None
    max_psi: float | None = None
    judge_on_upper_bound: bool = False
    max_flip_rate_ratio: float | None = None
    min_group_size: int | None = None
    require_devices: tuple[str, ...] | None = None
    require_delegates: tuple[str, ...] | None = None
    attributes: tuple[str, ...] | None = None   # None: every single attribute decides; cells never do
    allow_failed_jobs: bool = False
    source: str = ""

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy file; ``None`` loads the packaged default policy.

    Example::

        policy = load_policy(Path("strict.toml"))   # ConfigError names a bad or unknown key
    """
    if path is None:
        ref = resources.files("harness").joinpath("policies", DEFAULT_POLICY)
        return parse_policy(tomllib.loads(ref.read_text(encoding="utf-8")), source=f"(default) {ref}")
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read policy {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy {path} is not valid TOML: {exc}") from exc
    return parse_policy(raw, source=str(path))


def parse_policy(raw: Mapping[str, Any], source: str = "policy") -> Policy:
    """Validate a policy mapping (top-level keys only; see the module docstring)."""
    unknown = sorted(set(raw) - set(POLICY_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown policy key {unknown[0]!r}; known keys: {', '.join(POLICY_KEYS)}")
    values = {key: _check_value(key, value, source) for key, value in raw.items()}
    return Policy(**values, source=source)


def _check_value(key: str, value: Any, source: str) -> Any:
    kind, what = POLICY_KEYS[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "fraction" and number and 0 <= value <= 1:
        return float(value)
    if kind == "positive" and number and value > 0 and math.isfinite(value):
        return float(value)
    if kind == "count" and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "names" and isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    expected = {"fraction": "a number in [0, 1] (0.02 = 2 percentage points)", "positive": "a number > 0",
                "count": "an integer >= 1", "bool": "true or false", "names": "a list of non-empty strings"}[kind]
    raise ConfigError(f"{source}: policy key {key!r} ({what}) must be {expected}, got {value!r}")
