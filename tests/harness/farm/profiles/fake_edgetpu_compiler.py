"""FAKE edgetpu_compiler for qskew's tests: the real command line and log format, no compilation.

The real Edge TPU Compiler cannot be installed on the test machines (it comes only from Coral's
own apt repository). This stand-in follows its documented interface so that qskew's compile path
can be tested:

    fake_edgetpu_compiler [-o|--out_dir DIR] [-s|--show_operations] model.tflite...
    fake_edgetpu_compiler -v|--version        -> "Edge TPU Compiler version 16.0.0-fake"

For each model it writes ``DIR/<stem>_edgetpu.tflite`` -- a byte COPY of the input, NOT an Edge
TPU model (it holds no edgetpu-custom-op) -- and ``DIR/<stem>_edgetpu.log`` in the real log's
format, listing the model's operators (read from its flatbuffer) as "Mapped to Edge TPU".

Test knobs (environment):
    FAKE_EDGETPU_UNMAPPED  comma-separated op names reported as not mapped
    FAKE_EDGETPU_FAIL      print this as the compiler's error and exit 1
    FAKE_EDGETPU_CALLS     a file each invocation appends its arguments to (one line per call)
"""

import os
import sys
import time

FAKE_VERSION = "16.0.0-fake"
NOT_MAPPED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
USAGE = "usage: edgetpu_compiler [-o|--out_dir DIR] [-s|--show_operations] [-v|--version] model..."


def main(argv):
    if os.environ.get("FAKE_EDGETPU_CALLS"):
        with open(os.environ["FAKE_EDGETPU_CALLS"], "a") as f:
            f.write(" ".join(argv) + "\n")
    out_dir, show, models = ".", False, []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-v", "--version"):
            print(f"Edge TPU Compiler version {FAKE_VERSION}")
            return 0
        if arg in ("-h", "--help"):
            print(USAGE)
            return 0
        if arg in ("-o", "--out_dir"):
            if not args:
                print(USAGE, file=sys.stderr)
                return 1
            out_dir = args.pop(0)
        elif arg in ("-s", "--show_operations"):
            show = True
        elif arg.startswith("-"):
            print(f"ERROR: unknown option {arg}\n{USAGE}", file=sys.stderr)
            return 1
        else:
            models.append(arg)
    if not models:
        print(USAGE, file=sys.stderr)
        return 1
    print(f"Edge TPU Compiler version {FAKE_VERSION}")
    for model in models:
        code = compile_one(model, out_dir, show)
        if code:
            return code
    return 0


def compile_one(model, out_dir, show):
    if os.environ.get("FAKE_EDGETPU_FAIL"):
        print(f"ERROR: {os.environ['FAKE_EDGETPU_FAIL']}")
        return 1
    if not os.path.isfile(model):
        print(f"ERROR: Could not open '{model}'.")
        return 1
    start = time.perf_counter()
    table = op_table(model)
    stem = os.path.splitext(os.path.basename(model))[0]
    out_model = os.path.join(out_dir, f"{stem}_edgetpu.tflite")
    out_log = os.path.join(out_dir, f"{stem}_edgetpu.log")
    with open(model, "rb") as src, open(out_model, "wb") as dst:
        dst.write(src.read())
    rows = "".join(f"{op:<31}{count:<11}{status}\n" for op, count, status in table)
    header = f"{'Operator':<31}{'Count':<11}Status\n\n"
    with open(out_log, "w") as f:
        f.write(f"Edge TPU Compiler version {FAKE_VERSION}\nInput: {model}\nOutput: {out_model}\n\n")
        f.write(header + rows)
    total = sum(count for _, count, _ in table)
    on_tpu = sum(count for _, count, status in table if status == "Mapped to Edge TPU")
    print(f"\nModel compiled successfully in {int((time.perf_counter() - start) * 1000)} ms.\n")
    print(f"Input model: {model}\nOutput model: {out_model}\nNumber of Edge TPU subgraphs: 1\n"
          f"Total number of operations: {total}\nOperation log: {out_log}")
    if on_tpu < total:
        print("\nModel successfully compiled but not all operations are supported by the Edge TPU.")
    print(f"Number of operations that will run on Edge TPU: {on_tpu}\n"
          f"Number of operations that will run on CPU: {total - on_tpu}")
    if show:
        print("\n" + header + rows)
    return 0


def op_table(model):
    """(op, count, status) rows in order of first appearance, like the real log."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    parsed = fb.read_model(model)
    unmapped = {s.strip() for s in os.environ.get("FAKE_EDGETPU_UNMAPPED", "").split(",") if s.strip()}
    counts = {}
    for op in parsed.subgraphs[0].operators:
        name = fb.opcode_to_name(parsed, op.opcodeIndex) or "CUSTOM"
        counts[name] = counts.get(name, 0) + 1
    return [(op, n, NOT_MAPPED if op in unmapped else "Mapped to Edge TPU") for op, n in counts.items()]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
