"""Gradient norm, Hessian top eigenvalue and trace against a dense Hessian computed independently."""

import numpy as np
import pytest

from harness.analysis.curvature import GroupOps, group_curvature, hutchinson_trace, power_iteration

N, FEATURES, HIDDEN, CLASSES = 40, 4, 3, 3


@pytest.fixture(scope="module")
def small():
    """A float64 two-layer tanh network (27 weights): its Hessian is indefinite, so power iteration
    must find the eigenvalue of largest magnitude, not just the largest one."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(HIDDEN, activation="tanh", dtype="float64"),
        keras.layers.Dense(CLASSES, dtype="float64"),
    ])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, N)
    return model, x, y


@pytest.fixture(scope="module")
def dense(small):
    """(loss, gradient, Hessian) by tf.GradientTape.jacobian of the flattened gradient."""
    import tensorflow as tf

    model, x, y = small
    params = model.trainable_variables
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            logits = model(tf.constant(x, tf.float64))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grad = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, params)], axis=0)
    blocks = outer.jacobian(grad, params)
    hessian = np.concatenate([tf.reshape(b, [grad.shape[0], -1]).numpy() for b in blocks], axis=1)
    return float(loss), grad.numpy(), hessian


def test_gradient_norm_top_eigenvalue_and_loss_match_the_dense_hessian(small, dense):
    model, x, y = small
    loss, grad, hessian = dense
    eigenvalues = np.linalg.eigvalsh((hessian + hessian.T) / 2)
    assert eigenvalues.min() < 0 < eigenvalues.max()  # indefinite: the test can tell max from max |.|
    top = eigenvalues[np.argmax(np.abs(eigenvalues))]
    c = group_curvature(model, x, y, iterations=1000, probes=0, seed=1, tol=1e-13)
    assert c.loss == pytest.approx(loss, rel=1e-12)
    assert c.grad_norm == pytest.approx(np.linalg.norm(grad), rel=1e-10)
    assert c.hessian_top_eig == pytest.approx(top, rel=1e-8)
    assert c.iterations < 1000


def test_hessian_vector_products_equal_the_dense_hessian_times_v(small, dense):
    model, x, y = small
    hessian = dense[2]
    ops = GroupOps(model, x, y, batch_size=7)  # uneven batches: the sum must still be the full Hessian
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = [rng.normal(size=s) for s in ops.shapes]
        hv = np.concatenate([h.ravel() for h in ops.hvp(v)])
        np.testing.assert_allclose(hv, hessian @ np.concatenate([u.ravel() for u in v]), rtol=1e-9, atol=1e-12)


def test_hutchinson_uses_the_probes_it_reports_and_converges_to_the_trace(small, dense):
    model, x, y = small
    hessian = dense[2]
    ops = GroupOps(model, x, y)
    shapes = ops.shapes
    sizes = [int(np.prod(s)) for s in shapes]

    def dense_hvp(v):
        flat = hessian @ np.concatenate([u.ravel() for u in v])
        return [part.reshape(s) for part, s in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)]

    mine, mine_se = hutchinson_trace(ops.hvp, shapes, ops.dtype, 50, np.random.default_rng(11))
    exact, exact_se = hutchinson_trace(dense_hvp, shapes, ops.dtype, 50, np.random.default_rng(11))
    assert mine == pytest.approx(exact, rel=1e-9) and mine_se == pytest.approx(exact_se, rel=1e-7)
    c = group_curvature(model, x, y, iterations=0, probes=400, seed=2)
    trace = np.trace(hessian)
    assert abs(c.hessian_trace - trace) < 4 * c.hessian_trace_se
    assert c.hessian_trace_se < 0.1 * abs(trace)


def test_logit_variance_is_the_mean_per_sample_variance_across_classes(small):
    model, x, y = small
    logits = np.asarray(model(x), np.float64)
    c = group_curvature(model, x, y, iterations=0, probes=0, batch_size=16)
    assert c.logit_variance == pytest.approx(np.mean(np.var(logits, axis=1)), rel=1e-12)
    assert np.isnan(c.hessian_top_eig) and np.isnan(c.hessian_trace) and c.iterations == 0


def test_power_iteration_on_a_known_matrix_returns_its_largest_magnitude_eigenvalue():
    matrix = np.diag([3.0, -7.0, 1.0, 0.5])
    value, used = power_iteration(lambda v: [matrix @ v[0]], [(4,)], np.float64, 500, 1e-12,
                                  np.random.default_rng(0))
    assert value == pytest.approx(-7.0, rel=1e-9)
    assert used < 500


def test_same_seed_same_numbers(small):
    model, x, y = small
    a = group_curvature(model, x, y, iterations=5, probes=5, seed=9)
    b = group_curvature(model, x, y, iterations=5, probes=5, seed=9)
    assert a == b
