"""The job folder on the device: job.json read and checked, the samples loaded, outputs.npy and
result.json written atomically, and the failure every step may raise (:class:`JobFailure`).

Runs on boards like the rest of ``device_runner``: Python 3.7+, numpy, the standard library.
"""

import hashlib
import io
import json
import os

import numpy as np

if __package__:
    from device_runner import protocol
else:  # run as a plain script on a board: the sibling files are top-level modules
    import protocol


class JobFailure(Exception):
    """A failure the runner reports in result.json: which stage (kind), why, and the exit code."""

    def __init__(self, kind, message, exit_code):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.exit_code = exit_code


def read_job(job_dir):
    """job.json as a dict, checked for the keys and values the runner relies on."""
    path = os.path.join(job_dir, protocol.JOB_FILE)
    try:
        with open(path) as f:
            job = json.load(f)
    except (OSError, ValueError) as exc:
        raise JobFailure("job", "cannot read %s: %s" % (path, exc), protocol.EXIT_BAD_JOB)
    if not isinstance(job, dict):
        raise JobFailure("job", "%s is not a JSON object" % path, protocol.EXIT_BAD_JOB)
    try:
        job_major = protocol.major(job.get("protocol"))
    except ValueError:
        job_major = None
    if job_major != protocol.major(protocol.PROTOCOL_VERSION):
        raise JobFailure("job", "job protocol %r is not supported by this runner (protocol %s)"
                         % (job.get("protocol"), protocol.PROTOCOL_VERSION), protocol.EXIT_PROTOCOL)
    return _check_job(job, path)


def _check_job(job, path):
    missing = [k for k in ("model", "inputs", "preprocess", "delegate") if k not in job]
    if missing:
        raise JobFailure("job", "%s lacks %s" % (path, ", ".join(missing)), protocol.EXIT_BAD_JOB)
    job.setdefault("num_threads", 1)
    job.setdefault("batch_size", 1)
    job.setdefault("runtime", "auto")
    job.setdefault("outputs", protocol.DEFAULT_OUTPUTS)
    job.setdefault("result", protocol.DEFAULT_RESULT)
    try:
        protocol.parse_delegate(job["delegate"])
        for key in ("num_threads", "batch_size"):
            if not isinstance(job[key], int) or job[key] < 1:
                raise ValueError("%s must be a positive integer, not %r" % (key, job[key]))
        if job["runtime"] != "auto" and job["runtime"] not in protocol.RUNTIMES:
            raise ValueError("unknown runtime %r; known: auto, %s"
                             % (job["runtime"], ", ".join(protocol.RUNTIMES)))
        float(job["preprocess"]["scale"]), float(job["preprocess"]["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise JobFailure("job", "%s: %s" % (path, exc), protocol.EXIT_BAD_JOB)
    return job


def load_inputs(path):
    """The stored samples [N, ...] in their storage dtype (never unpickled), memory-mapped read-only:
    the batches are read as the loop reaches them, instead of the whole set (442 MB for 16,000
    96x96x3 images) being copied into memory before the first one (0.1-2.6 s measured here)."""
    try:
        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError:  # what cannot be mapped (an empty array) is read whole, or fails here
            x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise JobFailure("input", "cannot read inputs %s: %s" % (path, exc), protocol.EXIT_BAD_JOB)
    if x.ndim < 1 or x.shape[0] == 0:
        raise JobFailure("input", "inputs %s hold no samples (shape %s)" % (path, list(x.shape)),
                         protocol.EXIT_BAD_JOB)
    if x.dtype.kind not in "biuf":
        raise JobFailure("input", "inputs %s have non-numeric dtype %s" % (path, x.dtype),
                         protocol.EXIT_BAD_JOB)
    return x


def check_input_shape(x, in_info, path):
    expected = in_info["shape"][1:]
    if list(x.shape[1:]) != expected:
        raise JobFailure("input", "inputs %s have sample shape %s; the model wants %s"
                         % (path, list(x.shape[1:]), expected), protocol.EXIT_BAD_JOB)


def atomic_write(path, data, durable=True):
    """Replace ``path`` with ``data`` (bytes): a temporary file beside it, fsynced (``durable``),
    renamed over it.

    A reader (the host pulling result.json) sees the old file or the new one, never half of one;
    the temporary file is removed on any error. The runner's only atomic write: it must not import
    qskew's (``harness.fsutil``).
    """
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if durable:
        _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _fsync_dir(path):
    """Make a rename durable; some file systems (and Windows) refuse to open a folder: skip them."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_outputs(path, out, durable=True):
    """Write outputs.npy; returns the sha256 of its bytes (the host checks its pulled copy)."""
    buf = io.BytesIO()
    np.save(buf, out, allow_pickle=False)
    data = buf.getvalue()
    atomic_write(path, data, durable)
    return hashlib.sha256(data).hexdigest()


def write_result(path, result, durable=True):
    data = (protocol.dumps(result) + "\n").encode("utf-8")
    atomic_write(path, data, durable)


def in_job(job_dir, path):
    return os.path.join(job_dir, path)  # absolute paths stay as they are


def remove_stale(paths):
    """A rerun in the same job folder must never leave an earlier run's files to be read."""
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass
