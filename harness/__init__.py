"""qskew: measure how quantization skews a model across groups of people, on real devices."""

__version__ = "0.1.0"
