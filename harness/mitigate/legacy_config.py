"""Translate a Keras 3 model config into one ``tf_keras`` (Keras 2) can rebuild, where possible.

Quantization-aware training needs the model in ``tf_keras`` (tensorflow-model-optimization does
not support Keras 3). Built-in models are rebuilt from their definition in ``models/``; a user's
``.keras`` model is rebuilt from its config, translated here (plain dicts, no TensorFlow):

- serialized objects ``{"module", "class_name", "config", "registered_name"}`` become
  ``{"class_name", "config"}``; a dtype policy becomes its name (``"float32"``);
- ``InputLayer``: ``batch_shape`` becomes ``batch_input_shape``;
- keys Keras 2 does not know (:data:`KERAS3_ONLY_KEYS`) are dropped;
- a functional layer's ``inbound_nodes`` ``[{"args": [tensor...], "kwargs": {}}]`` become Keras 2's
  ``[[[layer, node_index, tensor_index, {}], ...]]`` (a list argument, e.g. of ``Add``, gives
  one entry per tensor).

Layers that exist only in Keras 3, custom layers and Lambda layers are left as they are; tf_keras
then refuses them and the QAT process reports that the model cannot be rebuilt.

    >>> to_tf_keras_config({"module": "keras", "class_name": "DTypePolicy",
    ...                     "config": {"name": "float32"}, "registered_name": None})
    'float32'
"""

from __future__ import annotations

from typing import Any

# Config keys Keras 3 writes and Keras 2 layers/initializers reject (unknown keyword arguments).
KERAS3_ONLY_KEYS = frozenset({"optional", "input_axes", "output_axes", "quantization_config",
                              "lora_rank", "lora_alpha", "build_config", "compile_config",
                              "registered_name", "module"})
DTYPE_POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy", "Policy"})
TENSOR_CLASS = "__keras_tensor__"


def to_tf_keras_config(obj: Any) -> Any:
    """``obj`` (a Keras 3 ``model.get_config()``/``to_json()`` tree) translated for tf_keras."""
    if isinstance(obj, list):
        return [to_tf_keras_config(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "class_name" in obj and "config" in obj:
        return _serialized(obj)
    return {k: to_tf_keras_config(v) for k, v in obj.items() if k not in KERAS3_ONLY_KEYS}


def _serialized(obj: dict) -> Any:
    name = obj["class_name"]
    if name in DTYPE_POLICIES and isinstance(obj["config"], dict):
        return obj["config"].get("name", "float32")
    config = to_tf_keras_config(obj["config"])
    if name == "InputLayer" and isinstance(config, dict) and "batch_shape" in config:
        config["batch_input_shape"] = config.pop("batch_shape")
    out: dict[str, Any] = {"class_name": name, "config": config}
    if "name" in obj:
        out["name"] = obj["name"]
    if "inbound_nodes" in obj:
        out["inbound_nodes"] = [_node(node) for node in obj["inbound_nodes"]]
    return out


def _node(node: Any) -> Any:
    """One inbound node: Keras 3 ``{"args", "kwargs"}`` -> Keras 2 ``[[layer, node, tensor, {}]...]``."""
    if not isinstance(node, dict) or "args" not in node:
        return node  # already Keras 2 shaped
    entries: list[list] = []
    for arg in node["args"]:
        for tensor in (arg if isinstance(arg, list) else [arg]):
            if isinstance(tensor, dict) and tensor.get("class_name") == TENSOR_CLASS:
                layer, node_index, tensor_index = tensor["config"]["keras_history"]
                entries.append([layer, node_index, tensor_index, {}])
    return entries
