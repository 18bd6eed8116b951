"""The records that describe a built-in model: how to build it and how to train it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class TrainRecipe:
    """How ``train_or_load`` trains a model: part of the cache key, so any change retrains."""

    epochs: int
    batch_size: int
    optimizer: str = "adam"      # a Keras optimizer name: "adam", "sgd", "rmsprop", ...
    learning_rate: float = 1e-3

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``build(input_shape, num_classes, seed) -> keras.Model`` (logits out)."""

    name: str
    build: Callable[..., Any]
    recipe: TrainRecipe
    description: str
