"""Emulated ARM boards: a Debian root file system for aarch64 or armv7l with a TFLite runtime's real
ARM build, entered as a whole ARM system through qemu-user (binfmt_misc) in a private mount namespace.

- ``spec``: what a board is made of (architecture profile, packages, runtime) and its cache key;
- ``build``: assembles a board from Debian packages and wheels (``qskew board build``);
- ``sandbox``: turns an argv into the host argv that runs it inside the board;
- ``cpuinfo``, ``manifest``, ``host``: the ARM /proc/cpuinfo, what a board holds, host checks.
"""
