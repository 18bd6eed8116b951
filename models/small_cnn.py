"""``small_cnn``: a two-convolution CNN for small images (8x8 digits); the default built-in model.

Conv2D(16, 3, relu, same) -> Conv2D(32, 3, relu, same) -> MaxPool(2) -> Flatten -> Dense(64, relu)
-> Dense(num_classes) logits. About 40k parameters on 8x8x1 inputs; on ``digits-groups`` it trains
in a few seconds on 2 CPU cores to ~97 % test accuracy.
"""

from __future__ import annotations

from models.spec import ModelSpec, TrainRecipe

NAME = "small_cnn"
RECIPE = TrainRecipe(epochs=15, batch_size=32, optimizer="adam", learning_rate=2e-3)


def build(input_shape: tuple, num_classes: int, seed: int = 0):
    """The model for samples of ``input_shape`` (no batch dim); every layer named, every init seeded.

    >>> build((8, 8, 1), 10).output.shape  # doctest: +SKIP
    (None, 10)
    """
    import keras

    def init(i: int):
        return keras.initializers.GlorotUniform(seed=seed * 100 + i)

    conv = dict(padding="same", activation="relu")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Conv2D(16, 3, kernel_initializer=init(0), name="conv1", **conv)(inputs)
    x = keras.layers.Conv2D(32, 3, kernel_initializer=init(1), name="conv2", **conv)(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", kernel_initializer=init(2), name="dense")(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer=init(3), name="logits")(x)
    return keras.Model(inputs, logits, name=NAME)


SPEC = ModelSpec(name=NAME, build=build, recipe=RECIPE,
                 description="2x Conv2D + Dense, for 8x8 digits; trains in seconds")
