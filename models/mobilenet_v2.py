"""``mobilenet_v2``: Keras MobileNetV2 (alpha 0.35, random init) at 32x32, for a realistic architecture.

The model takes the dataset's samples as they are: a ``Resizing`` layer inside the model scales
them to 32x32 (MobileNetV2's smallest input), and the application is built on that tensor, so the
graph stays flat (no nested model) for the TFLite converter and per-layer quantization. Any number
of channels works because there are no pretrained weights. Batch-norm momentum is lowered to 0.9 so
the moving statistics used at inference converge within a short training run.
"""

from __future__ import annotations

from models.spec import ModelSpec, TrainRecipe

NAME = "mobilenet_v2"
ALPHA = 0.35               # the smallest width multiplier: ~0.4M parameters, trains on a CPU
RESOLUTION_PX = 32         # MobileNetV2's minimum input size; digits are upscaled from 8x8
BN_MOMENTUM = 0.9         # Keras's 0.999 leaves moving statistics near their init after ~300 steps
RECIPE = TrainRecipe(epochs=16, batch_size=32, optimizer="adam", learning_rate=2e-3)


def build(input_shape: tuple, num_classes: int, seed: int = 0):
    """MobileNetV2 for samples of ``input_shape`` (no batch dim), logits out.

    Keras applications take no per-layer seeds, so this sets Keras's global seed to ``seed``.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    resized = keras.layers.Resizing(RESOLUTION_PX, RESOLUTION_PX, name="resize")(inputs)
    app = keras.applications.MobileNetV2(
        input_tensor=resized, alpha=ALPHA, weights=None, include_top=True, classes=num_classes,
        classifier_activation=None,
    )
    # Re-wrapped so the model has one plain input (built on input_tensor, its input is a list).
    model = keras.Model(inputs, app.output, name=NAME)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


SPEC = ModelSpec(name=NAME, build=build, recipe=RECIPE,
                 description=f"MobileNetV2 alpha {ALPHA} at {RESOLUTION_PX}x{RESOLUTION_PX}, random init")
