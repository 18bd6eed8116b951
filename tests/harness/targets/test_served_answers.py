"""Served runners (local and over ADB) whose answer cannot be trusted: one left half-read is not asked
again (the rest of that answer, its QSKEW-DONE line, would be taken for the next job's); one that prints
without end is ended at the output limit."""

import sys

import pytest

from device_runner import protocol
from harness.targets import adb_wire as wire
from harness.targets.adb_served import ServedShell
from harness.targets.process import ServedLost, ServedProcess

# Answers each line with a progress line, then QSKEW-DONE <length of the line>.
ECHO = ("import sys\nfor line in sys.stdin:\n    print('progress ' + line.strip(), flush=True)\n"
        "    print('QSKEW-DONE %d' % len(line.strip()), flush=True)\n")


def _interrupted_watch(text):
    raise KeyboardInterrupt  # Ctrl-C while the answer comes in


def test_a_local_served_process_left_mid_answer_is_ended_not_asked_again():
    served = ServedProcess([sys.executable, "-u", "-c", ECHO])
    try:
        assert served.request("ab", 30, protocol.parse_done).returncode == 2
        with pytest.raises(KeyboardInterrupt):
            served.request("abc", 30, protocol.parse_done, watch=_interrupted_watch)
        with pytest.raises(ServedLost, match="left unfinished"):
            served.request("abcdefg", 30, protocol.parse_done)  # it would answer 3 (the 'abc' job)
    finally:
        served.close(kill=True)


class _Stream:
    """A shell-v2 stream answering every stdin line as ECHO does (all of it in one packet)."""

    def __init__(self):
        self.open, self._out = True, []

    def send(self, data, timeout_s):
        packets, _ = wire.iter_shell_packets(data, 1 << 20)
        for ident, payload in packets:
            if ident == wire.SHELL_STDIN:
                job = payload.decode().strip()
                self._out.append(f"progress {job}\nQSKEW-DONE {len(job)}\n".encode())

    def recv(self, timeout_s):
        return wire.encode_shell_packet(wire.SHELL_STDOUT, self._out.pop(0))

    def close(self):
        self.open = False


def test_a_served_shell_left_mid_answer_is_ended_not_asked_again():
    killed = []
    served = ServedShell(_Stream(), ["python3", "run.py", "--serve"], "phone", killed.append)
    served.pid = 42
    assert served.request("ab", 30, protocol.parse_done).returncode == 2
    with pytest.raises(KeyboardInterrupt):
        served.request("abc", 30, protocol.parse_done, watch=_interrupted_watch)
    with pytest.raises(ServedLost, match="left unfinished"):
        served.request("abcdefg", 30, protocol.parse_done)
    assert killed == [42] and not served.alive


class _Spewing(_Stream):
    """A runner printing garbage without end (never its QSKEW-DONE line)."""

    def recv(self, timeout_s):
        return wire.encode_shell_packet(wire.SHELL_STDOUT, b"garbage " * 512 + b"\n")


def test_a_served_answer_past_the_output_limit_ends_the_runner_before_its_time_limit():
    from harness.targets.adb_link import PeerError

    killed = []
    served = ServedShell(_Spewing(), ["python3", "run.py", "--serve"], "phone", killed.append)
    served.pid, served.limit_bytes = 7, 64 * 1024
    with pytest.raises(PeerError, match="65536-byte limit"):
        served.request("job", 5, protocol.parse_done)  # without the limit: held all, then timed out
    assert killed == [7] and not served.alive
