"""farm.progress: per-device lines and the farm summary, printed and written to the run directory."""

import json

from harness.farm.progress import FARM_FILE, FarmProgress


def test_the_summary_counts_jobs_retries_drained_devices_and_broken_leases(tmp_path):
    said = []
    farm = FarmProgress(["d1", "d2"], enabled=False, echo=said.append)
    farm.start("d1", "int8/xnnpack", 100)
    farm.samples("d1", 50, 100)
    farm.finish("d1", "ok")
    farm.start("d2", "int8/reference", 100)
    farm.finish("d2", "device error")
    farm.retry("d2", "int8 on pool/reference", "link lost")
    farm.drained("d2", "failed 2 jobs in a row")
    farm.lease_broken("d1", "holder gone: {...}")
    farm.add_device("d3")  # joined mid-run
    summary = farm.close(tmp_path)
    assert summary["devices"]["d1"]["jobs_ok"] == 1 and summary["devices"]["d1"]["samples_per_s"] is not None
    assert summary["devices"]["d2"]["device_errors"] == 1 and summary["devices"]["d2"]["state"] == "drained"
    assert summary["drained"] == {"d2": "failed 2 jobs in a row"} and len(summary["retries"]) == 1
    assert "d3" in summary["devices"]
    assert json.loads((tmp_path / FARM_FILE).read_text()) == summary
    assert any("1 retries, 1 drained device(s); d2 (failed 2 jobs in a row), 1 lease(s) broken" in s for s in said)
