"""Built-in model definitions and their training recipes, looked up by name.

One registry, ``_REGISTRY``, filled in one place below. Each entry is a ``ModelSpec``: a
``build(input_shape, num_classes, seed) -> keras.Model`` function (logits out, no softmax) and the
``TrainRecipe`` that ``models.train.train_or_load`` follows. Importing this package does not import
TensorFlow or Keras; ``build`` does.

>>> import models
>>> models.NAMES
('small_cnn', 'mobilenet_v2', 'mlp')
>>> models.get("small_cnn").recipe.epochs
15
"""

from __future__ import annotations

from harness.errors import ModelError
from models import mlp, mobilenet_v2, small_cnn
from models.spec import ModelSpec, TrainRecipe

DEFAULT = "small_cnn"  # trains in seconds on 2 cores; the demo and the tests use it

_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec for spec in (small_cnn.SPEC, mobilenet_v2.SPEC, mlp.SPEC)
}
NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str) -> ModelSpec:
    """The registered model ``name``; ModelError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ModelError(f"unknown model {name!r}; known: {', '.join(NAMES)}") from None


__all__ = ["DEFAULT", "NAMES", "ModelSpec", "TrainRecipe", "get"]
