"""Shared helpers for the test suite, not tests themselves.

tiny_models (tiny real .tflite models), synthetic_runs (run directories from synthetic logits) and
chromium (headless Chromium screenshots). Importable as ``support`` because pyproject.toml's
``[tool.pytest.ini_options]`` puts ``tests`` on ``pythonpath``.
"""
