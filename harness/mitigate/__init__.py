"""Mitigations of quantization skew, built as variants that run next to the plain ones.

Modules: ``options`` (MitigationOptions), ``mitigate`` (host orchestration: builds the variants,
runs them through ``harness.evaluate``), ``qat`` (the quantization-aware-training child process,
Keras 2 via tf_keras), ``job`` (the files the host and the QAT process exchange), ``sampling``
(group-balanced sampler and group weights), ``legacy_config`` (Keras 3 config -> tf_keras),
``table`` (the before/after table), ``toolkit`` (the ``mitigate`` extra's packages, tf-keras and
tfmot, and the error naming the extra when they are missing). Nothing here imports TensorFlow at
module level.
"""
