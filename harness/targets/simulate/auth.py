"""ADB RSA authentication, device side: decode Android public keys and verify token signatures.

Key format (``adbkey.pub``, AOSP ``android_pubkey``): base64 of 524 little-endian bytes
``{u32 modulus_size_words (64); u32 n0inv; u8 modulus[256] LE; u8 rr[256] LE; u32 exponent}``
followed by `` user@host``. The host signs the device's 20-byte token with PKCS#1 v1.5 and a
SHA-1 DigestInfo, using the token itself as the digest (``RSA_sign(NID_sha1, token, 20, ...)``).
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

ANDROID_PUBKEY = struct.Struct("<II256s256sI")  # 524 bytes, 2048-bit keys only (as adbd)
MODULUS_WORDS = 64  # 2048 bits / 32


class KeyFormatError(ValueError):
    """A public key that is not in Android's adbkey.pub format."""


def decode_android_pubkey(text: bytes | str) -> rsa.RSAPublicKey:
    """Parse one ``adbkey.pub`` line (``<base64> user@host``, optional trailing NUL)."""
    if isinstance(text, str):
        text = text.encode("ascii", errors="replace")
    fields = text.rstrip(b"\0").split()
    if not fields:
        raise KeyFormatError("empty public key")
    try:
        raw = base64.b64decode(fields[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError(f"public key is not base64: {exc}") from exc
    if len(raw) != ANDROID_PUBKEY.size:
        raise KeyFormatError(f"public key has {len(raw)} bytes, expected {ANDROID_PUBKEY.size}")
    words, _n0inv, modulus, _rr, exponent = ANDROID_PUBKEY.unpack(raw)
    if words != MODULUS_WORDS:
        raise KeyFormatError(f"public key modulus has {words} words, expected {MODULUS_WORDS}")
    n = int.from_bytes(modulus, "little")
    try:
        return rsa.RSAPublicNumbers(exponent, n).public_key()
    except ValueError as exc:
        raise KeyFormatError(f"invalid RSA public key: {exc}") from exc


def key_id(key: rsa.RSAPublicKey) -> tuple[int, int]:
    """Identity of a key for de-duplication: (modulus, exponent)."""
    numbers = key.public_numbers()
    return numbers.n, numbers.e


def verify_token(key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    """True if ``signature`` is the host's PKCS#1 v1.5 / SHA-1-prehashed signature of ``token``."""
    try:
        key.verify(bytes(signature), bytes(token), padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    except (InvalidSignature, ValueError):
        return False
    return True


def ensure_trusted(path: Path, key_line: str | bytes) -> None:
    """Make the ``adb_keys`` file at ``path`` list ``key_line`` (appended if its key is absent)."""
    key = decode_android_pubkey(key_line)
    if key_id(key) not in {key_id(k) for k in load_trusted_keys(path)}:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        append_key_line(path, key_line.encode() if isinstance(key_line, str) else bytes(key_line))


def append_key_line(path: Path, line: bytes) -> None:
    """Append one key line to an ``adb_keys`` file, first ending its last line if it has no newline
    (else the new key would be glued onto the last one and both would be unreadable)."""
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write(line.strip() + b"\n")


def load_trusted_keys(path: Path) -> list[rsa.RSAPublicKey]:
    """Every valid key line of an ``adb_keys``-style file (missing file: none); bad lines are skipped."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    keys = []
    for line in lines:
        if line.strip():
            try:
                keys.append(decode_android_pubkey(line))
            except KeyFormatError:
                continue
    return keys
