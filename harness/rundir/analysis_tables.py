"""analysis.csv, layers.csv and suggested-mixed.json: the one writer and reader of those files.

``qskew analyze`` writes the two CSV files into the run directory it analyzes (``RunWriter``
ignores them, like signoff.json); ``qskew suggest-mixed`` writes suggested-mixed.json into the
run directory it creates. Files are written atomically (temporary file, fsync, ``os.replace``).

``analysis.csv`` -- one row per analyzed model x group; columns, in order::

    variant            "reference" (the FP32 Keras model) or a variant of the run whose weights,
                       dequantized from its .tflite, were put back into a copy of the Keras model.
                       ONLY the weights are quantized in that model: activations, inputs and
                       logits stay float, so it isolates the weights' share of the damage
    group              group label (test split)
    n                  samples used (at most --max-samples-per-group, drawn with --seed)
    loss               mean cross-entropy of the group, nats
    logit_variance     mean over samples of the variance of the logits across classes (ddof 0)
    grad_norm          ||grad_theta L_g||_2 over every trainable weight
    hessian_top_eig    eigenvalue of largest magnitude of the group-loss Hessian (power iteration)
    hessian_trace      Hutchinson estimate of the Hessian's trace (Rademacher probes)
    iterations         Hessian-vector products the power iteration used (<= --power-iterations)
    probes             Rademacher probes of the trace estimate
    seed               seed of the sample draw, the start vector and the probes
    hessian_trace_se   standard error of hessian_trace (sd of v^T H v over probes / sqrt(probes))
    excess_loss        loss - the reference's loss on the same samples (Tran's EL_g)
    weight_delta_norm  ||theta_Q - theta_R||_2, the dequantized minus the FP32 weights (0 for reference)
    excess_loss_bound  ||g_R|| ||dtheta|| + 1/2 |lambda_R| ||dtheta||^2 with the reference's gradient
                       norm and top eigenvalue for the group: Tran 2022's second-order bound
    error              why a variant could not be analyzed ("" when it was; its numbers are then empty)

``layers.csv`` -- one row per variant x layer x group; columns, in order::

    variant, layer, group   the variant, the Keras layer, the group
    rmse               root mean square of (variant tensor - FP32 layer output) over samples and elements
    snr_db             10 log10(sum f^2 / sum (q - f)^2); inf when identical
    n                  samples
    order              the layer's position in the Keras model
    op                 TFLite op that produced the tensor ("OUTPUT" for the model's output tensor)
    dtype              the tensor's dtype in the variant (int8, int16, float32...)
    tensor             the tensor's name in the .tflite file

``suggested-mixed.json`` -- the recipe ``qskew suggest-mixed`` built and what it measured
(fields documented in ``harness.analysis.suggest``).

The formats live with the run directory, not with the analysis stage, because more than the stage
reads them: the report shows both tables of any run directory that has them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ResultsError
from harness.fsutil import jsonable
from harness.rundir.layout import ANALYSIS_FILE, LAYERS_FILE, SUGGESTION_FILE
from harness.rundir.reader import read_typed_csv
from harness.rundir.writer import atomic_write

if TYPE_CHECKING:
    import pandas as pd

REFERENCE = "reference"   # variant name of the FP32 Keras model (as in the stored predictions)

ANALYSIS_COLUMNS: dict[str, str] = {
    "variant": "string", "group": "string", "n": "int64", "loss": "float64", "logit_variance": "float64",
    "grad_norm": "float64", "hessian_top_eig": "float64", "hessian_trace": "float64", "iterations": "int64",
    "probes": "int64", "seed": "int64", "hessian_trace_se": "float64", "excess_loss": "float64",
    "weight_delta_norm": "float64", "excess_loss_bound": "float64", "error": "string",
}
LAYER_COLUMNS: dict[str, str] = {
    "variant": "string", "layer": "string", "group": "string", "rmse": "float64", "snr_db": "float64",
    "n": "int64", "order": "int64", "op": "string", "dtype": "string", "tensor": "string",
}


def frame(rows: list[dict], columns: dict[str, str]) -> "pd.DataFrame":
    """Rows as a DataFrame with exactly ``columns`` (missing values empty), whatever the rows."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(columns))
    for name, dtype in columns.items():
        if dtype == "string":
            table[name] = table[name].fillna("").astype("string")
        elif dtype == "int64":
            table[name] = table[name].fillna(0).astype("int64")
        else:
            table[name] = table[name].astype("float64")
    return table


def write_analysis(run_dir: Path, table: "pd.DataFrame") -> Path:
    return _write_csv(Path(run_dir) / ANALYSIS_FILE, table, ANALYSIS_COLUMNS)


def write_layers(run_dir: Path, table: "pd.DataFrame") -> Path:
    return _write_csv(Path(run_dir) / LAYERS_FILE, table, LAYER_COLUMNS)


def read_analysis(run_dir: Path) -> "pd.DataFrame | None":
    """analysis.csv of ``run_dir``, or None when ``qskew analyze`` has not written one."""
    return _read_csv(Path(run_dir) / ANALYSIS_FILE, ANALYSIS_COLUMNS)


def read_layers(run_dir: Path) -> "pd.DataFrame | None":
    """layers.csv of ``run_dir``, or None when there is none."""
    return _read_csv(Path(run_dir) / LAYERS_FILE, LAYER_COLUMNS)


def write_suggestion(run_dir: Path, suggestion: dict[str, Any]) -> Path:
    path = Path(run_dir) / SUGGESTION_FILE
    text = json.dumps(jsonable(suggestion), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda p: p.write_text(text))
    return path


def read_suggestion(run_dir: Path) -> dict | None:
    path = Path(run_dir) / SUGGESTION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from exc


def _write_csv(path: Path, table: "pd.DataFrame", columns: dict[str, str]) -> Path:
    if list(table.columns) != list(columns):
        raise ResultsError(f"{path}: refusing to write columns {list(table.columns)}; expected {list(columns)}")
    atomic_write(path, lambda p: table.to_csv(p, index=False))
    return path


def _read_csv(path: Path, columns: dict[str, str]) -> "pd.DataFrame | None":
    return read_typed_csv(path, columns) if path.is_file() else None
