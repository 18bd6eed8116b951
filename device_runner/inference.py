"""The inference loop: stored samples converted to the model's input dtype, fed batch by batch,
outputs gathered into one [N, ...] array with the time of every invoke.
"""

import time

import numpy as np

if __package__:
    from device_runner import protocol
    from device_runner.jobdir import JobFailure
    from device_runner.runtime import prepare
else:  # run as a plain script on a board: the sibling files are top-level modules
    import protocol
    from jobdir import JobFailure
    from runtime import prepare

# Samples converted to the model's input dtype at a time: conversion stays vectorised and out of
# the per-batch loop, while memory stays bounded on boards with little RAM.
CONVERT_CHUNK_BYTES = 32 * 1024 * 1024
# Integer storage up to this many bytes per value (uint8, int16...) is converted by table lookup.
LUT_MAX_ITEMSIZE = 2
# How uint8 samples become a float32 input, measured once per runner process (``measure_float_fill``):
# "scale" (multiply-add in place) or "table" (a gather from the 256 float32 values). Both give the
# same bits; which is faster depends on the platform (x86 hosts: scale, 6-9x; numpy under qemu
# aarch64: table). None until measured; unmeasured, the runner scales.
FLOAT_FILL = None
FLOAT_FILLS = ("scale", "table")
PROBE_SHAPE = (32, 32, 32, 3)  # 96 KiB of uint8: a batch-sized probe that stays cheap on slow boards
PROBE_REPEATS = 3              # best of, against a noisy moment


def measure_float_fill():
    """Time both ways of filling a float32 input from uint8 on this device; sets and returns FLOAT_FILL."""
    global FLOAT_FILL
    x = (np.arange(int(np.prod(PROBE_SHAPE))) % 256).astype(np.uint8).reshape(PROBE_SHAPE)
    view = np.empty(PROBE_SHAPE, dtype=np.float32)
    fills = _float_fills({"scale": 1.0 / 255, "offset": 0.0}, {"dtype": "float32"}, np.uint8)
    best = {}
    for name in FLOAT_FILLS:
        times = []
        for _ in range(PROBE_REPEATS):
            t0 = time.perf_counter()
            fills[name](view, x)
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    FLOAT_FILL = min(FLOAT_FILLS, key=lambda name: best[name])
    return FLOAT_FILL


def conversion_name(x, in_info):
    """How ``infer`` converts ``x`` for this input (result.json ``input.conversion``, 1.5)."""
    if x.dtype.kind != "u" or x.dtype.itemsize > LUT_MAX_ITEMSIZE:
        return "chunk"
    return (FLOAT_FILL or "scale") if np.dtype(in_info["dtype"]) == np.float32 else "table"


def _float_fills(preprocess, in_info, storage):
    """{"scale": fill, "table": fill}: two ways to write ``stored * scale + offset`` as float32 into
    a view, with the same float32 operations (the table holds them for every storable value)."""
    scale, offset = np.float32(preprocess["scale"]), np.float32(preprocess["offset"])
    table = _convert(np.arange(np.iinfo(storage).max + 1, dtype=storage), preprocess, in_info)

    def by_scale(view, xb):
        np.multiply(xb, scale, out=view, dtype=np.float32)
        view += offset

    def by_table(view, xb):
        np.take(table, xb, out=view)
    return {"scale": by_scale, "table": by_table}


def to_model_input(stored, preprocess, in_info):
    """Stored samples -> the model's input dtype: float_x = stored*scale+offset, then quantize.

    Quantization follows TFLite's own QUANTIZE kernel: round half away from zero of x/scale, plus
    the zero point, clipped to the dtype's range. 8- and 16-bit integer storage (uint8 images...)
    goes through a lookup table of every storable value, computed with exactly the same float32
    arithmetic: one gather instead of eight passes over the data.
    """
    if stored.dtype.kind in "ui" and stored.dtype.itemsize <= LUT_MAX_ITEMSIZE:
        info = np.iinfo(stored.dtype)
        table = _convert(np.arange(info.min, info.max + 1, dtype=stored.dtype), preprocess, in_info)
        return table[stored.astype(np.intp) - info.min] if info.min else table[stored]
    return _convert(stored, preprocess, in_info)


def _convert(stored, preprocess, in_info):
    x = stored.astype(np.float32)
    x *= np.float32(preprocess["scale"])
    x += np.float32(preprocess["offset"])
    dtype = np.dtype(in_info["dtype"])
    if dtype.kind == "f":
        return x if dtype == np.float32 else x.astype(dtype)
    if in_info["scale"] == 0.0:
        raise JobFailure("input", "model input is %s without quantization parameters; cannot map "
                         "float samples to it" % dtype.name, protocol.EXIT_BAD_JOB)
    x /= np.float32(in_info["scale"])
    x = np.where(x >= 0, np.floor(x + np.float32(0.5)), np.ceil(x - np.float32(0.5)))
    x += np.float32(in_info["zero_point"])
    limits = np.iinfo(dtype)
    np.clip(x, limits.min, limits.max, out=x)
    return x.astype(dtype)


def _new_output(got, fed, n_samples):
    """The [N, ...] output array, made after the first invoke (graphs with a dynamic batch know
    their output shape only then)."""
    if got.ndim == 0 or got.shape[0] != fed:
        raise JobFailure("invoke", "output shape %s does not start with the batch size %d"
                         % (list(got.shape), fed), protocol.EXIT_RUNTIME)
    return np.empty((n_samples,) + got.shape[1:], dtype=got.dtype)


def infer(interpreter, x, preprocess, in_info, out_info, batch, dynamic,
          progress_interval_s=protocol.PROGRESS_INTERVAL_S):
    """Run every sample; returns (outputs [N, ...], per-batch invoke seconds).

    The loop body is what a bare interpreter loop does (fill the input, invoke, get_tensor) plus
    one copy into a preallocated array. A final partial batch resizes a dynamic batch dimension,
    or is padded (and its extra outputs dropped) when the batch is fixed.
    """
    n = x.shape[0]
    out_index = out_info["index"]
    invoke, get_tensor = interpreter.invoke, interpreter.get_tensor
    feed = (_direct_feeder(interpreter, x, preprocess, in_info)
            or _chunk_feeder(interpreter, x, preprocess, in_info, batch))
    clock = time.perf_counter
    out, per_batch_s, start = None, [], 0
    reported = clock()
    try:
        for start in range(0, n, batch):
            m = min(batch, n - start)
            if m != batch and dynamic:
                prepare(interpreter, in_info, m, True)
            feed(start, m)
            t0 = clock()
            invoke()
            per_batch_s.append(clock() - t0)
            got = get_tensor(out_index)
            if out is None:
                out = _new_output(got, m if dynamic else batch, n)
            out[start:start + m] = got[:m]
            if t0 - reported >= progress_interval_s:  # a long job says it is alive
                print(protocol.progress_line(start + m, n), flush=True)
                reported = t0
    except JobFailure:
        raise
    except Exception as exc:
        raise JobFailure("invoke", "invoke failed on samples %d..%d: %s"
                         % (start, min(start + batch, n) - 1, exc), protocol.EXIT_RUNTIME)
    return out, per_batch_s


def _direct_feeder(interpreter, x, preprocess, in_info):
    """For 8/16-bit unsigned storage (uint8 images...): fill each batch straight into the input
    tensor's buffer -- no converted copy of the data set, no extra set_tensor copy. None when the
    storage dtype does not allow it.

    How depends on the model's input dtype and the device: a float32 input is filled the way
    ``measure_float_fill`` found faster here (scaled in place, ``stored * scale + offset``, or
    gathered from a table of the same float32 operations: the same bits either way; a 64x96x96x3
    batch took 0.6 ms scaled and 4.1 ms gathered on a 2-core x86 host, 45 ms and 35 ms under qemu
    aarch64); an integer input always goes through a table of every storable value, since
    quantizing (divide, round, shift, clip) per element costs 10-14x more than one gather on both.
    """
    if x.dtype.kind != "u" or x.dtype.itemsize > LUT_MAX_ITEMSIZE:
        return None
    in_index = in_info["index"]
    if np.dtype(in_info["dtype"]) == np.float32:
        fill = _float_fills(preprocess, in_info, x.dtype)[FLOAT_FILL or "scale"]
    else:
        table = _convert(np.arange(np.iinfo(x.dtype).max + 1, dtype=x.dtype), preprocess, in_info)

        def fill(view, xb):
            np.take(table, xb, out=view)

    def feed(b0, m):
        view = interpreter.tensor(in_index)()  # dropped on return: invoke refuses live views
        if view.shape[0] == m:
            fill(view, x[b0:b0 + m])
        else:
            fill(view[:m], x[b0:b0 + m])
            view[m:] = 0
    return feed


def _chunk_feeder(interpreter, x, preprocess, in_info, batch):
    """Any other storage: convert CONVERT_CHUNK_BYTES of samples at a time, set_tensor per batch."""
    sample_bytes = max(1, int(np.prod(x.shape[1:])) * 4)
    chunk = max(batch, (CONVERT_CHUNK_BYTES // sample_bytes) // batch * batch)
    in_index, set_tensor = in_info["index"], interpreter.set_tensor
    held = {"at": None, "xs": None}

    def feed(b0, m):
        c0 = b0 // chunk * chunk
        if held["at"] != c0:
            held["at"], held["xs"] = c0, to_model_input(x[c0:c0 + chunk], preprocess, in_info)
        xb = held["xs"][b0 - c0:b0 - c0 + m]
        if m != batch and interpreter.get_input_details()[0]["shape"][0] != m:
            pad = np.zeros((batch,) + xb.shape[1:], dtype=xb.dtype)
            pad[:m] = xb
            xb = pad
        set_tensor(in_index, xb)
    return feed
