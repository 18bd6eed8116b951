"""The run directory: its layout (``layout``), the writer that appends one job at a time
(``writer``), the reader (``reader``; ``light`` reads what ``qskew signoff`` judges without pandas
or pyarrow) and the resume rules (``resume``).

The names below are the package's public face; the layout and every field are documented in
:mod:`harness.rundir.layout`.
"""

from harness.rundir.layout import (ANALYSIS_FILE, DELEGATES_FILE, FILES, JOB_KEYS, LAYERS_FILE, LOCK_FILE,
                                   MANIFEST_FILE, REFERENCE_JOB, REPORT_DIR, SCHEMA_VERSION, SIGNOFF_FILE, SIGNOFF_JUNIT_FILE,
                                   SUGGESTION_FILE, SUMMARY_DIR, report_dir, signoff_junit_path)
from harness.rundir.reader import RunData, read_run, read_signoff, read_typed_csv
from harness.rundir.resume import config_hash
from harness.rundir.writer import RunWriter, atomic_write, write_signoff

__all__ = [
    "ANALYSIS_FILE", "DELEGATES_FILE", "FILES", "JOB_KEYS", "LAYERS_FILE", "LOCK_FILE", "MANIFEST_FILE",
    "REFERENCE_JOB",
    "REPORT_DIR", "SCHEMA_VERSION", "SIGNOFF_FILE", "SIGNOFF_JUNIT_FILE", "SUGGESTION_FILE", "SUMMARY_DIR",
    "RunData", "RunWriter", "atomic_write", "config_hash", "read_run", "read_signoff", "read_typed_csv",
    "report_dir", "signoff_junit_path", "write_signoff",
]
