"""Why quantization skews a model, and what to raise to 16 bits: host-side analysis of a run.

Modules: ``curvature`` (per-group loss, logit variance, gradient norm, Hessian top eigenvalue and
trace of a Keras model), ``dequant`` (a variant's weights, dequantized from its ``.tflite``, put
back into a copy of the Keras model), ``layers`` (per-layer, per-group error of a variant's
intermediate tensors against the FP32 Keras layers), ``tables`` (analysis.csv / layers.csv: the
one writer and reader of those files), ``analyze`` (``qskew analyze``), ``suggest``
(``qskew suggest-mixed``). Importing this package imports no TensorFlow; the modules that need it
import it inside their functions.
"""
