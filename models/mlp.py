"""``mlp``: a small multilayer perceptron for tabular features (e.g. the built-in ``adult``).

Dense(64, relu) -> Dense(32, relu) -> Dense(num_classes) logits; about 9k parameters on Adult's
107 features. Trained for 5 epochs with Adam it takes a few seconds on 2 CPU cores and reaches
about 85 % test accuracy on Adult (the README has the measured numbers).
"""

from __future__ import annotations

from models.spec import ModelSpec, TrainRecipe

NAME = "mlp"
RECIPE = TrainRecipe(epochs=5, batch_size=128, optimizer="adam", learning_rate=1e-3)


def build(input_shape: tuple, num_classes: int, seed: int = 0):
    """The model for feature vectors of ``input_shape`` (no batch dim); every init seeded.

    >>> build((107,), 2).output.shape  # doctest: +SKIP
    (None, 2)
    """
    import keras

    def init(i: int):
        return keras.initializers.GlorotUniform(seed=seed * 100 + i)

    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = keras.layers.Dense(64, activation="relu", kernel_initializer=init(0), name="dense1")(inputs)
    x = keras.layers.Dense(32, activation="relu", kernel_initializer=init(1), name="dense2")(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer=init(2), name="logits")(x)
    return keras.Model(inputs, logits, name=NAME)


SPEC = ModelSpec(name=NAME, build=build, recipe=RECIPE,
                 description="Dense 64-32, for tabular features (adult); trains in seconds")
