"""Tiny hand-checkable inputs for the metrics tests: datasets and runs built from numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from harness.records import DeviceRun, GroupedDataset, Logits


def make_dataset(labels, groups, num_classes: int = 3, ids=None) -> GroupedDataset:
    """A test split with no pixels: per_sample only needs ids, labels and groups."""
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    ids = np.asarray(ids if ids is not None else [f"s{i}" for i in range(n)], dtype=str)
    return GroupedDataset(name="tiny", ids=ids, x=np.zeros((n, 0), np.uint8), y=labels,
                          group=np.asarray(groups, dtype=str), split=np.full(n, "test"),
                          num_classes=num_classes)


def make_run(logits, variant: str = "int8", target: str = "local", delegate: str = "xnnpack") -> DeviceRun:
    return DeviceRun(variant=variant, target=target, delegate=delegate, artifact_sha256="0" * 64,
                     logits=np.asarray(logits, dtype=np.float32))


def one_hot_logits(preds, num_classes: int = 3) -> np.ndarray:
    """Logits whose argmax is ``preds`` (2 on the predicted class, 0 elsewhere)."""
    return (2.0 * np.eye(num_classes)[np.asarray(preds)]).astype(np.float32)


@pytest.fixture(name="make_dataset")
def _make_dataset_fixture():
    return make_dataset


@pytest.fixture(name="make_run")
def _make_run_fixture():
    return make_run


@pytest.fixture(name="one_hot_logits")
def _one_hot_logits_fixture():
    return one_hot_logits


@pytest.fixture
def tiny():
    """4 samples, 3 classes, groups a/b; values small enough to work out by hand (see test_compare)."""
    test = make_dataset(labels=[0, 1, 2, 2], groups=["a", "a", "b", "b"])
    z_ref = np.array([[2, 1, 0], [0, 0, 0], [1, 3, 0], [0, 1, 2]], dtype=np.float32)
    z_var = np.array([[1, 2, 0], [0, 1, 0], [1, 3, 0], [0, 0, 3]], dtype=np.float32)
    return test, Logits(ids=test.ids.copy(), values=z_ref), make_run(z_var)
