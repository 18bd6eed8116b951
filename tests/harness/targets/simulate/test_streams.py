"""harness/targets/simulate/streams.py: one stream's buffering, WRTE cutting, one WRTE in flight, CLSE.

The link is a recorder here (the stream needs only ``maxdata``, ``send`` and ``unregister``); the real
connection drives streams in test_connection.py.
"""

import threading

import pytest

from harness.targets.adb_wire import A_CLSE, A_WRTE
from harness.targets.simulate.streams import Closed, Stream

WAIT_S = 5.0  # upper bound for a thread these tests wait for


class RecordingLink:
    """Records what a stream sends; ``alive=False`` makes sends fail like a dead socket."""

    def __init__(self, maxdata: int, registered: bool = True):
        self.maxdata = maxdata
        self.sent: list[tuple[int, int, int, bytes]] = []
        self.alive = True
        self.registered = registered
        self.cond = threading.Condition()

    def send(self, command, arg0, arg1, data=b""):
        with self.cond:
            self.sent.append((command, arg0, arg1, bytes(data)))
            self.cond.notify_all()
        return self.alive

    def unregister(self, stream):
        was, self.registered = self.registered, False
        return was

    def wait_for_sends(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.sent) >= count, WAIT_S), f"fewer than {count} sends"


def _in_thread(target, *args) -> tuple[threading.Thread, list]:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(target(*args)), daemon=True)
    thread.start()
    return thread, results


def test_write_cuts_at_maxdata_and_waits_for_each_okay():
    link = RecordingLink(maxdata=4)
    stream = Stream(link, local_id=7, remote_id=3)
    thread, results = _in_thread(stream.write, b"abcdefghij")
    link.wait_for_sends(1)
    thread.join(0.1)
    assert thread.is_alive() and len(link.sent) == 1  # the second WRTE waits for the first OKAY
    for count in (2, 3):
        stream.acknowledged()
        link.wait_for_sends(count)
    thread.join(WAIT_S)
    assert results == [True]
    assert link.sent == [(A_WRTE, 7, 3, b"abcd"), (A_WRTE, 7, 3, b"efgh"), (A_WRTE, 7, 3, b"ij")]


def test_read_exact_spans_feeds_and_raises_closed_on_a_short_stream():
    stream = Stream(RecordingLink(maxdata=4096), local_id=1, remote_id=1)
    stream.feed(b"ab")
    stream.feed(b"cde")
    assert stream.buffered() == 5
    assert stream.read_exact(4) == b"abcd"
    assert stream.read_some() == b"e"
    stream.feed(b"xy")
    stream.shutdown()
    with pytest.raises(Closed):
        stream.read_exact(3)
    assert stream.read_some() == b"xy"
    assert stream.read_some() == b""


def test_write_after_shutdown_or_on_a_dead_link_drops_the_data():
    link = RecordingLink(maxdata=4096)
    stream = Stream(link, local_id=1, remote_id=1)
    stream.shutdown()
    assert stream.write(b"late") is False and link.sent == []
    dead = RecordingLink(maxdata=4096)
    dead.alive = False
    stream = Stream(dead, local_id=2, remote_id=9)
    assert stream.write(b"lost") is False and stream.closed


def test_finish_waits_for_the_last_okay_then_closes_once():
    link = RecordingLink(maxdata=4096)
    stream = Stream(link, local_id=5, remote_id=8)
    assert stream.write(b"x")
    thread, _ = _in_thread(stream.finish)
    thread.join(0.1)
    assert thread.is_alive() and link.sent[-1][0] == A_WRTE  # no CLSE before the OKAY
    stream.acknowledged()
    thread.join(WAIT_S)
    assert link.sent[-1] == (A_CLSE, 5, 8, b"")
    closed_by_host = RecordingLink(maxdata=4096, registered=False)
    Stream(closed_by_host, local_id=6, remote_id=8).finish()
    assert closed_by_host.sent == []  # the host closed first: no second CLSE
