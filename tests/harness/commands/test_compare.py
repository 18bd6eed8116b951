"""``qskew compare``: the text table, --json alone on stdout, a missing run directory as one error line."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from support.synthetic_runs import make_run_dir

A_VARIANTS = {"fp32": {}, "int8": {"majority": (0.9, 0.4), "minority": (0.5, 1.3)}}
B_VARIANTS = {"int8": {"majority": (0.9, 0.4), "minority": (0.8, 0.5)}, "int16x8": {"majority": (1.0, 0.1)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    return {"a": make_run_dir(root / "a", variants=A_VARIANTS, noise_seed=1),
            "b": make_run_dir(root / "b", variants=B_VARIANTS, noise_seed=7),  # same test set
            "other_ids": make_run_dir(root / "c", variants=A_VARIANTS, id_prefix="t")}


def test_cli_compare(runs, capsys):
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "paired: the same 750 test samples" in out and "int8/local/xnnpack" in out
    assert main(["compare", str(runs["a"]), str(runs["a"].parent / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_json_is_one_document_alone_on_stdout(runs, capfd):
    assert main(["compare", str(runs["a"]), str(runs["other_ids"]), "--json"]) == 0
    out, _ = capfd.readouterr()  # fd level: native code's prints must not land here
    data = json.loads(out)  # exactly one document: extra text would fail to parse
    assert data["paired"] is False and data["rows"][0]["acc_diff_lo"] is None
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--json", "--resamples", "50"]) == 0
    out, _ = capfd.readouterr()
    data = json.loads(out)
    assert data["paired"] is True and out == json.dumps(data, indent=2) + "\n"  # the document and nothing else
