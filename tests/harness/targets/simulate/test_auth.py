"""harness/targets/simulate/auth.py: Android public keys and the SHA-1-prehashed PKCS#1 v1.5 token check."""

import os

import pytest
from adb_shell.auth.sign_cryptography import CryptographySigner
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from harness.targets.simulate import auth


def test_decodes_the_pubkey_adb_shell_writes(rsa_key):
    signer = CryptographySigner(str(rsa_key))
    key = auth.decode_android_pubkey((rsa_key.parent / "adbkey.pub").read_bytes())
    assert key.key_size == 2048
    assert key.public_numbers().n == signer.rsa_key.public_key().public_numbers().n


@pytest.mark.parametrize("signer_class", [CryptographySigner, PythonRSASigner])
def test_a_token_signed_by_adb_shell_verifies(rsa_key, other_rsa_key, signer_class):
    signer = signer_class(str(rsa_key)) if signer_class is CryptographySigner else signer_class.FromRSAKeyPath(str(rsa_key))
    key = auth.decode_android_pubkey(signer.GetPublicKey())
    token = os.urandom(20)
    signature = signer.Sign(token)
    assert len(signature) == 256
    assert auth.verify_token(key, token, signature)
    assert not auth.verify_token(key, os.urandom(20), signature)
    other = auth.decode_android_pubkey((other_rsa_key.parent / "adbkey.pub").read_bytes())
    assert not auth.verify_token(other, token, signature)
    assert not auth.verify_token(key, token, b"\0" * 256)


def test_malformed_keys_are_refused_and_skipped_in_a_keys_file(rsa_key, tmp_path):
    with pytest.raises(auth.KeyFormatError):
        auth.decode_android_pubkey(b"not base64!! user@host")
    with pytest.raises(auth.KeyFormatError, match="bytes"):
        auth.decode_android_pubkey(b"AAAA user@host")
    keys_file = tmp_path / "adb_keys"
    keys_file.write_bytes(b"garbage\n\n" + (rsa_key.parent / "adbkey.pub").read_bytes().strip() + b"\n")
    assert len(auth.load_trusted_keys(keys_file)) == 1
    assert auth.load_trusted_keys(tmp_path / "missing") == []


def test_a_key_appended_to_a_file_without_a_final_newline_gets_its_own_line(rsa_key, other_rsa_key, tmp_path):
    keys_file = tmp_path / "adb_keys"
    first = (rsa_key.parent / "adbkey.pub").read_bytes().strip()
    keys_file.write_bytes(first)  # hand-edited: no trailing newline
    second = (other_rsa_key.parent / "adbkey.pub").read_bytes().strip()
    auth.ensure_trusted(keys_file, second)
    auth.ensure_trusted(keys_file, second)  # already listed: not added twice
    assert keys_file.read_bytes() == first + b"\n" + second + b"\n"
    assert len(auth.load_trusted_keys(keys_file)) == 2


def test_a_device_accepting_a_new_key_appends_it_on_its_own_line(rsa_key, other_rsa_key, tmp_path):
    from harness.targets.simulate.sandbox import DeviceSandbox

    keys_file = tmp_path / "adb_keys"
    keys_file.write_bytes((rsa_key.parent / "adbkey.pub").read_bytes().strip())
    device = DeviceSandbox(tmp_path / "root", trusted_keys=keys_file, accept_new_keys=True)
    assert device.offer_public_key((other_rsa_key.parent / "adbkey.pub").read_bytes().strip() + b"\0")
    assert len(auth.load_trusted_keys(keys_file)) == 2 and keys_file.read_bytes().endswith(b"\n")
