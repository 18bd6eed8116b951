"""Quantize stage: a Keras model (or SavedModel) -> TFLite variants, cached and host-checked.

Modules: ``variants`` (the registry of variant names), ``options`` (QuantizeOptions),
``calibration`` (the representative dataset, training split only), ``convert`` (convert /
convert_all with the content-addressed cache), ``inspect`` (read a .tflite: I/O, ops, prepare).
Only this package imports the TFLite converter or ai-edge-quantizer, and only inside functions,
so importing it stays cheap.
"""
