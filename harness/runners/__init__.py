"""Runner kinds: how a job runs on a device once its files are there.

- :mod:`harness.runners.python` -- qskew's device runner on the device's Python;
- :mod:`harness.runners.benchmark_model` -- TFLite's ``benchmark_model`` binary, one call per batch
  (its flags and log in :mod:`harness.runners.benchmark_model_log`);
- :mod:`harness.runners.common` -- the batch rule and output decoding both kinds share;
- :mod:`harness.runners.registry` -- the one table of kinds the farm looks a device's ``runner`` up in.

Runners sit below the farm and above :mod:`harness.on_device` (push, pull, verify) and the targets;
they never import the farm.
"""

STANDIN_BINARY = "standin"  # ``benchmark_model = "standin"``: qskew's Python stand-in for the binary
