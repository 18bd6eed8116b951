"""``qskew bisect`` on an emulated aarch64 board (slow): int8 with the board's ``builtin`` kernels
against the host's ``reference`` kernels. Bisect names, for each sample whose logits differ, the
first tensor that differs; the test then recomputes that tensor on the host -- the op cut out of the
model with the TFLite schema, fed the board's own inputs to that op, on the reference kernels -- and
finds the host's value, not the board's: the op's ARM kernel made the difference, not its inputs."""


import numpy as np
import pytest

from harness import cli
from harness.bisect.graph import cut_op, graph_facts
from harness.bisect.run import BisectOptions, bisect, variant_model
from harness.rundir import read_run

pytestmark = pytest.mark.slow


def test_bisect_names_the_first_differing_tensor_on_the_board_and_the_host_confirms_it(aarch64_board, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["demo", "--board", "aarch64", "--variants", "int8", "--out", str(out), "--no-progress"]) == 0
    result = bisect(out, BisectOptions("int8/board-aarch64/builtin", "int8/local/reference", per_group=6))
    assert result.choice.rule in ("flipped", "logits differ")
    firsts = result.table[result.table["first"]]
    assert firsts["sample"].nunique() == len(result.choice.ids)  # every chosen sample differs somewhere
    model = variant_model(read_run(out), "int8")
    graph = graph_facts(model.read_bytes())
    board, host = result.dumps
    by_name = {k.name: k.index for k in board.kept}
    for row in firsts.itertuples():
        op = next(o for o in graph.ops if o.node == row.node)
        position = list(result.choice.ids).index(row.sample)
        activation = next(t for t in op.inputs if t >= 0 and not graph.tensors[t].constant)
        board_in = board.values[by_name[graph.tensors[activation].name]][position]
        assert np.array_equal(board_in, host.values[activation][position])  # the inputs agree...
        recomputed = _run_alone(cut_op(model.read_bytes(), row.node), board_in)
        assert np.array_equal(recomputed, host.values[row.tensor_index][position])  # ...the host's op gives B
        assert not np.array_equal(recomputed, board.values[by_name[row.tensor]][position])  # the board's did not


def _run_alone(cut: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=cut, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [1] + list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x[None])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]


