"""ADB on the host side of qskew: the wire format and a simulated device that speaks real ADB.

``wire`` packs and parses messages, sync records and shell-v2 packets; ``auth`` checks RSA keys;
``simulator.SimulatedDevice`` is a loopback ADB device for tests, the demo and trying a device run
before plugging in a phone. Nothing here imports TensorFlow.
"""
