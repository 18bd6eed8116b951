"""Per-group optimisation quantities of a Keras classifier (metrics reference §3.4, §3.5).

For a group's samples (x, y) and the model's trainable weights theta, with the group loss
``L_g(theta) = mean_i CE(softmax(z(x_i)), y_i)`` (natural log, nats):

* ``loss``            L_g at the model's current weights;
* ``logit_variance``  mean over samples of the variance of the logits across classes (ddof 0),
                      the same definition as the run metrics' ``logit_var``;
* ``grad_norm``       ||grad_theta L_g||_2 over every trainable weight, concatenated;
* ``hessian_top_eig`` the eigenvalue of largest magnitude of the Hessian H_g of L_g, by power
                      iteration on Hessian-vector products (Rayleigh quotient of the last iterate);
                      stops when two successive estimates agree to ``tol`` (relative) or after
                      ``iterations`` products;
* ``hessian_trace``   Hutchinson's estimate mean_p v_p^T H_g v_p over ``probes`` Rademacher vectors,
                      with its standard error ``hessian_trace_se`` (sample sd / sqrt(probes)).

A Hessian-vector product is the gradient of ``grad L_g . v`` (nested ``tf.GradientTape``: reverse
over reverse), computed batch by batch and summed with weights n_b / n, so it equals the product
of the full group's Hessian whatever the batch size. Weights that do not reach the loss get zero
gradient. Random vectors come from ``numpy.random.default_rng(seed)``: the same seed gives the same
numbers.

    >>> stats = group_curvature(model, x_float, y, iterations=20, probes=10, seed=0)  # doctest: +SKIP
    >>> stats.hessian_top_eig, stats.hessian_trace  # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.errors import ModelError

BATCH_SIZE = 256          # samples per forward/backward pass: bounds memory of the double backward
POWER_TOL = 1e-3          # relative change between successive eigenvalue estimates that ends power iteration
EPS = 1e-30               # guards a division by a zero-norm vector


@dataclass(frozen=True)
class GroupCurvature:
    """What :func:`group_curvature` measured on one group (definitions in the module docstring)."""

    n: int
    loss: float
    logit_variance: float
    grad_norm: float
    hessian_top_eig: float
    hessian_trace: float
    hessian_trace_se: float
    iterations: int          # Hessian-vector products the power iteration used
    probes: int


def group_curvature(model: Any, x: np.ndarray, y: np.ndarray, iterations: int = 20, probes: int = 10,
                    seed: int = 0, tol: float = POWER_TOL, batch_size: int = BATCH_SIZE) -> GroupCurvature:
    """Loss, logit variance, gradient norm, Hessian top eigenvalue and trace of ``model`` on (x, y).

    ``x`` are the model's float inputs [n, ...], ``y`` int class labels [n]. ``iterations`` = 0
    or ``probes`` = 0 skips that estimate (NaN).
    """
    if len(x) == 0:
        raise ModelError(f"model {model.name!r}: no samples to analyze")
    ops = GroupOps(model, x, y, batch_size)
    rng = np.random.default_rng(seed)
    loss, logit_var, grads = ops.loss_and_grad()
    top, used = power_iteration(ops.hvp, ops.shapes, ops.dtype, iterations, tol, rng)
    trace, trace_se = hutchinson_trace(ops.hvp, ops.shapes, ops.dtype, probes, rng)
    return GroupCurvature(n=len(x), loss=loss, logit_variance=logit_var, grad_norm=_norm(grads),
                          hessian_top_eig=top, hessian_trace=trace, hessian_trace_se=trace_se,
                          iterations=used, probes=probes)


def power_iteration(hvp: Callable[[list[np.ndarray]], list[np.ndarray]], shapes: list[tuple], dtype,
                    iterations: int, tol: float, rng: np.random.Generator) -> tuple[float, int]:
    """(eigenvalue of largest magnitude, products used): v <- Hv / ||Hv|| from a Gaussian start."""
    if iterations <= 0:
        return float("nan"), 0
    v = _normalized([rng.standard_normal(s).astype(dtype) for s in shapes])
    estimate = float("nan")
    for step in range(1, iterations + 1):
        hv = hvp(v)
        new = _dot(v, hv)  # Rayleigh quotient v^T H v with ||v|| = 1
        converged = np.isfinite(estimate) and abs(new - estimate) <= tol * max(abs(new), EPS)
        estimate = new
        if converged or _norm(hv) < EPS:
            return estimate, step
        v = _normalized(hv)
    return estimate, iterations


def hutchinson_trace(hvp: Callable[[list[np.ndarray]], list[np.ndarray]], shapes: list[tuple], dtype,
                     probes: int, rng: np.random.Generator) -> tuple[float, float]:
    """(mean of v^T H v over Rademacher v, its standard error); NaN, NaN for no probe."""
    if probes <= 0:
        return float("nan"), float("nan")
    values = []
    for _ in range(probes):
        v = [rng.choice(np.array([-1.0, 1.0], dtype=dtype), size=s) for s in shapes]
        values.append(_dot(v, hvp(v)))
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / np.sqrt(probes)) if probes > 1 else float("nan")
    return float(values.mean()), se


class GroupOps:
    """Loss, gradient and Hessian-vector products of one model on one group, batch by batch.

    ``hvp(v)`` takes and returns a list of arrays shaped like ``model.trainable_variables``.
    """

    def __init__(self, model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = BATCH_SIZE):
        import tensorflow as tf

        y = np.asarray(y, dtype=np.int64)
        self.model = model
        self.params = list(model.trainable_variables)
        if not self.params:
            raise ModelError(f"model {model.name!r} has no trainable weights to differentiate")
        self.shapes = [tuple(int(d) for d in p.shape) for p in self.params]
        self.dtypes = [np.dtype(tf.as_dtype(p.dtype).as_numpy_dtype) for p in self.params]
        self.dtype = self.dtypes[0]  # of the random vectors (cast per weight in hvp)
        n = len(x)
        self.batches = [(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size]),
                         tf.constant(len(x[i:i + batch_size]) / n, dtype=tf.float64))
                        for i in range(0, n, batch_size)]
        self._grad, self._hvp = _traced(self, x.shape[1:], x.dtype)

    def loss_and_grad(self) -> tuple[float, float, list[np.ndarray]]:
        loss = variance = 0.0
        total = [np.zeros(s, np.float64) for s in self.shapes]
        for x, y, w in self.batches:
            b_loss, b_var, grads = self._grad(x, y, w)
            loss += float(w) * float(b_loss)
            variance += float(w) * float(b_var)
            total = [t + g.numpy().astype(np.float64) for t, g in zip(total, grads)]
        return loss, variance, total

    def hvp(self, v: list[np.ndarray]) -> list[np.ndarray]:
        import tensorflow as tf

        vs = [tf.constant(np.asarray(u, dtype=d)) for u, d in zip(v, self.dtypes)]
        total = [np.zeros(s, np.float64) for s in self.shapes]
        for x, y, w in self.batches:
            total = [t + h.numpy().astype(np.float64) for t, h in zip(total, self._hvp(x, y, w, vs))]
        return total


_LAST_TRACED: dict[str, Any] = {}  # one model's functions: analyze finishes a model before the next


def _traced(ops: GroupOps, sample_shape: tuple, x_dtype) -> tuple[Callable, Callable]:
    """The model's gradient and HVP ``tf.function``s, traced once per model (any batch size).

    Only the last model's functions are kept (it is what the next group of the same model reuses);
    they close over the model, so keeping more would keep every analyzed model alive.
    """
    import tensorflow as tf

    key = (id(ops.model), tuple(sample_shape), np.dtype(x_dtype).name)
    if _LAST_TRACED.get("key") == key and _LAST_TRACED["model"]() is ops.model:
        return _LAST_TRACED["grad"], _LAST_TRACED["hvp"]
    x_spec = tf.TensorSpec([None, *sample_shape], tf.as_dtype(x_dtype))
    y_spec, w_spec = tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.float64)
    v_spec = [tf.TensorSpec(s, tf.as_dtype(d)) for s, d in zip(ops.shapes, ops.dtypes)]
    model, params = ops.model, ops.params
    grad = tf.function(lambda x, y, w: _grad_batch(model, params, x, y, w), input_signature=[x_spec, y_spec, w_spec])
    hvp = tf.function(lambda x, y, w, v: _hvp_batch(model, params, x, y, w, v),
                      input_signature=[x_spec, y_spec, w_spec, v_spec])
    _LAST_TRACED.clear()
    _LAST_TRACED.update(key=key, model=weakref.ref(ops.model), grad=grad, hvp=hvp)
    return grad, hvp


def _loss(model: Any, x, y):
    """(mean cross-entropy, mean per-sample logit variance) of a batch, in float64."""
    import tensorflow as tf

    logits = tf.cast(model(x, training=False), tf.float64)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    centered = logits - tf.reduce_mean(logits, axis=1, keepdims=True)
    return tf.reduce_mean(ce), tf.reduce_mean(tf.reduce_mean(tf.square(centered), axis=1))


def _grad_batch(model: Any, params: list, x, y, weight):
    """Loss, logit variance and the gradient of weight * loss (weight = n_batch / n)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss, variance = _loss(model, x, y)
        scaled = tf.cast(weight, loss.dtype) * loss
    grads = tape.gradient(scaled, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return loss, variance, grads


def _hvp_batch(model: Any, params: list, x, y, weight, v):
    """H v of weight * loss: reverse-over-reverse (the gradient of grad . v)."""
    import tensorflow as tf

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss, _ = _loss(model, x, y)
            scaled = tf.cast(weight, loss.dtype) * loss
        grads = inner.gradient(scaled, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        dot = tf.add_n([tf.reduce_sum(tf.cast(g, tf.float64) * tf.cast(u, tf.float64)) for g, u in zip(grads, v)])
    return outer.gradient(dot, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def _dot(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(sum(np.vdot(np.asarray(u, np.float64), np.asarray(w, np.float64)) for u, w in zip(a, b)))


def _norm(vectors: list[np.ndarray]) -> float:
    return float(np.sqrt(_dot(vectors, vectors)))


def _normalized(vectors: list[np.ndarray]) -> list[np.ndarray]:
    norm = max(_norm(vectors), EPS)
    return [np.asarray(u, np.float64) / norm for u in vectors]
