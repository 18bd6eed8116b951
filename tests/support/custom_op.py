"""A small Keras model with an op TFLite has no builtin for (tf.linalg.det -> MatrixDeterminant):
the converter refuses it with pages of MLIR, or, with ``allow_custom_ops``, writes a .tflite whose
custom op no runtime can resolve. Imported as ``support.custom_op``."""

from __future__ import annotations

from pathlib import Path

CUSTOM_OP = "MatrixDeterminant"


def determinant_model():
    """(4,) -> det of the input as a 2x2 matrix, next to the input -> Dense(3) logits."""
    import keras
    import tensorflow as tf

    class Determinant(keras.layers.Layer):
        def call(self, x):
            return tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2))), (-1, 1))

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    joined = keras.layers.Concatenate()([Determinant()(inputs), inputs])
    return keras.Model(inputs, keras.layers.Dense(3)(joined), name="determinant")


def custom_op_tflite(path: Path) -> Path:
    """The determinant model converted with ``allow_custom_ops``: a .tflite holding MatrixDeterminant."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(determinant_model())
    converter.allow_custom_ops = True
    path.write_bytes(converter.convert())
    return path
