"""A simulated ADB device that speaks the real protocol (CNXN, AUTH, streams, shell, exec, sync).

``simulator.SimulatedDevice`` listens on loopback and plays a phone's adbd for tests, the demo and
trying a device run before plugging in a phone. Below it, each importing only what lies further
down: ``connection`` (one client link), ``services`` (shell and exec, and which service an OPEN
names) and ``sync`` (the file service), ``sandbox`` (the device's identity, keys, sandbox folder,
processes and faults), ``host_root`` (its shell's confinement: its folder as ``/``, this host's
Python read-only; ``harness.targets.confine``), ``streams`` (one OPENed stream) and ``auth`` (its
RSA key checks). The wire
format itself is ``harness.targets.adb_wire``, shared with ``AdbTarget``. Nothing here imports
TensorFlow.

The simulated device starts its shell commands with ``subprocess.Popen`` directly, not through
``harness.targets.process.run_command``: they are the *device's* processes, streaming stdin and
stdout over ADB while they run, which a run-to-completion helper cannot do.
"""
