"""harness/targets/adb_keys.py: which ADB key is used, generation with mode 0600, loose keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.targets.simulate import auth as device_auth
from harness.errors import TargetError
from harness.targets import adb_keys


def test_generated_key_is_private_and_in_qskews_config(adb_home):
    signer, path = adb_keys.load_signer(None, "dev")
    assert path == adb_home / ".config" / "qskew" / "adbkey"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o077) == 0
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".qskew-keygen")]
    # the device side verifies what the signer signs with the public key written beside it
    public = device_auth.decode_android_pubkey(path.with_name("adbkey.pub").read_text())
    token = os.urandom(20)
    assert device_auth.verify_token(public, token, signer.Sign(token))
    again, same = adb_keys.load_signer(None, "dev")  # reused, not regenerated
    assert same == path and again.GetPublicKey() == signer.GetPublicKey()


def test_adbs_own_key_is_used_when_present(adb_home):
    android = adb_home / ".android" / "adbkey"
    adb_keys.generate_key(android, "dev")
    os.unlink(str(android) + ".pub")  # adb may keep only the private key; the public one is derived
    signer, path = adb_keys.load_signer(None, "dev")
    assert path == android and not adb_keys.default_key_path().exists()
    public = device_auth.decode_android_pubkey(signer.GetPublicKey())
    token = os.urandom(20)
    assert device_auth.verify_token(public, token, signer.Sign(token))


def test_an_explicit_key_path_wins_and_is_made_if_missing(adb_home, tmp_path):
    adb_keys.generate_key(adb_home / ".android" / "adbkey", "dev")
    chosen = tmp_path / "lab keys" / "lab-adbkey"
    _, path = adb_keys.load_signer(chosen, "dev")
    assert path == chosen and (chosen.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "lab keys" / "lab-adbkey.pub").is_file()


def test_a_group_readable_key_is_made_private(adb_home, caplog):
    key = adb_keys.default_key_path()
    adb_keys.generate_key(key, "dev")
    os.chmod(key, 0o644)
    adb_keys.load_signer(None, "dev")
    assert (key.stat().st_mode & 0o777) == 0o600
    assert "readable by others" in caplog.text


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_another_users_loose_key_is_refused(adb_home):
    key = adb_keys.default_key_path()
    adb_keys.generate_key(key, "dev")
    os.chmod(key, 0o640)
    os.chown(key, 54321, -1)
    with pytest.raises(TargetError, match="readable by others") as err:
        adb_keys.load_signer(None, "phone-3")
    assert err.value.device == "phone-3" and str(key) in str(err.value)


def test_a_garbage_key_is_a_clear_error(adb_home, tmp_path):
    key = tmp_path / "adbkey"
    key.write_text("not a key")
    key.chmod(0o600)
    (tmp_path / "adbkey.pub").write_text("x")
    with pytest.raises(TargetError, match="PKCS#8") as err:
        adb_keys.load_signer(key, "phone-4")
    assert str(key) in str(err.value)


def test_the_readme_says_what_the_code_does_with_a_loose_key():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert "readable by others is refused" not in readme  # the code fixes our own key, it does not refuse it
    assert "made private (0600) with a warning" in readme and "another user's is refused" in readme
