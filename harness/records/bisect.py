"""The file ``qskew bisect`` writes (``OUT/bisect.csv``, OUT defaulting to ``RUN_DIR/bisect``): its
name and columns, shared by the bisect stage that writes it and the report that reads it.

One row per chosen sample and tensor of the reference job's graph, in execution order::

    sample, group            the test sample and its group
    order, tensor,           the tensor's position in execution order, its name and index
      tensor_index
    op, node, options,       the op that produced it (INPUT for the model input), its node, builtin
      weights                options and how its weights are quantized (per-channel, per-tensor, float)
    dtype, unit              the reference tensor's dtype; "steps" (quantization steps) or "relative"
    max_diff, mean_diff,     job A against job B on this sample (NaN when A could not see it)
      frac_diff
    exceeds, first           above the tolerance; the sample's first such tensor
    on_a, partition          where A computed it: input | cpu | delegate | hidden; the DELEGATE node
                             whose partition output it is (-1 if none)
    job_a, job_b             the two jobs, VARIANT/TARGET/DELEGATE
"""

BISECT_DIR = "bisect"
BISECT_FILE = "bisect.csv"
COLUMNS = ("sample", "group", "order", "tensor", "tensor_index", "op", "node", "options", "weights", "dtype",
           "unit", "max_diff", "mean_diff", "frac_diff", "exceeds", "first", "on_a", "partition")
FILE_COLUMNS = COLUMNS + ("job_a", "job_b")
