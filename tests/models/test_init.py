"""Tests for models/__init__.py: the registry and its errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import models
from harness.errors import ModelError


def test_names_and_default():
    assert models.NAMES == ("small_cnn", "mobilenet_v2", "mlp")
    assert models.DEFAULT in models.NAMES


def test_get_returns_spec_with_frozen_recipe():
    spec = models.get("small_cnn")
    assert spec.name == "small_cnn" and callable(spec.build)
    assert spec.recipe.epochs > 0 and spec.recipe.batch_size > 0 and spec.recipe.learning_rate > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.recipe.epochs = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", ["resnet", "", None])
def test_unknown_model(name):
    with pytest.raises(ModelError) as info:
        models.get(name)
    assert str(info.value) == f"unknown model {name!r}; known: small_cnn, mobilenet_v2, mlp"


def test_import_does_not_load_tensorflow():
    code = "import sys, models; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
