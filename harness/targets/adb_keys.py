"""The host's ADB RSA key: which file to use, making one when there is none, and keeping it private.

Order: an explicit ``key_path`` (made there if missing), else adb's own ``~/.android/adbkey`` (so a
phone that already trusts this computer's adb trusts qskew too), else qskew's own key in
``$XDG_CONFIG_HOME/qskew/adbkey`` (``~/.config/qskew/adbkey``), generated on first use. Key files
are PKCS#8 PEM with an Android-format ``.pub`` beside them (what ``adb`` and adb-shell write); the
private key must be readable by its owner only: a group/world-readable key we own is fixed to 0600
(with a warning), one we do not own is refused.

>>> signer, path = load_signer(None, device="pixel-7")   # doctest: +SKIP
>>> path                                                 # doctest: +SKIP
PosixPath('/home/me/.android/adbkey')
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from harness.errors import TargetError

log = logging.getLogger(__name__)

KEY_FILE_MODE = 0o600      # private key: owner read/write only, as adb itself writes it
KEY_DIR_MODE = 0o700       # qskew's config folder holds the key; nobody else needs to list it
KEY_NAME = "adbkey"        # same file name as adb's, so users recognise it
CONFIG_ENV = "XDG_CONFIG_HOME"


def android_key_path() -> Path:
    """adb's own key, ``~/.android/adbkey`` (``$HOME`` read at call time)."""
    return Path.home() / ".android" / KEY_NAME


def default_key_path() -> Path:
    """Where qskew keeps the key it generates: ``$XDG_CONFIG_HOME/qskew/adbkey``."""
    root = os.environ.get(CONFIG_ENV) or str(Path.home() / ".config")
    return Path(root) / "qskew" / KEY_NAME


def resolve_key_path(key_path: Path | None) -> Path:
    """The key file to use (see the module docstring for the order); it may not exist yet."""
    if key_path is not None:
        return Path(key_path).expanduser()
    android = android_key_path()
    return android if android.is_file() else default_key_path()


def load_signer(key_path: Path | None, device: str):
    """A ``PythonRSASigner`` for the resolved key (generated if missing) and the key's path.

    Raises TargetError naming ``device`` and the file when the key is unreadable, malformed or
    readable by others and not ours to fix.
    """
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    path = resolve_key_path(key_path)
    if not path.exists():
        generate_key(path, device)
    ensure_private(path, device)
    try:
        priv = path.read_text()
        pub = _public_key_text(path)
        return PythonRSASigner(pub, priv), path
    except (OSError, ValueError, IndexError) as exc:
        raise TargetError(f"cannot use ADB key {path}: {exc} (expected a PKCS#8 PEM private key as "
                          f"written by adb or adb_shell.auth.keygen)", device) from exc


def public_key(key_path: Path | None, device: str) -> tuple[str, Path]:
    """The one-line Android public key (``<base64> user@host``) of the key ``load_signer`` would use
    (generated if missing), and that key's path: what a simulated device must trust for qskew."""
    path = resolve_key_path(key_path)
    if not path.exists():
        generate_key(path, device)
    ensure_private(path, device)
    try:
        text = _public_key_text(path)
    except (OSError, ValueError, IndexError) as exc:
        raise TargetError(f"cannot read the public half of ADB key {path}: {exc}", device) from exc
    return text.strip().split("\n")[0], path


def generate_key(path: Path, device: str) -> None:
    """Write a new 2048-bit key pair to ``path`` (0600) and ``path.pub`` (Android format).

    The pair is made in a private temp folder and renamed into place, so the private key is never
    readable by others, even for a moment, whatever the umask.
    """
    from adb_shell.auth.keygen import keygen

    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=KEY_DIR_MODE)
        with tempfile.TemporaryDirectory(prefix=".qskew-keygen-", dir=path.parent) as tmp:
            tmp_key = Path(tmp) / KEY_NAME
            keygen(str(tmp_key))
            os.chmod(tmp_key, KEY_FILE_MODE)
            os.replace(str(tmp_key) + ".pub", str(path) + ".pub")
            os.replace(tmp_key, path)
    except OSError as exc:
        raise TargetError(f"cannot create an ADB key at {path}: {exc}", device) from exc
    log.info("[%s] generated a new ADB key %s; the device must authorize it once "
             "(\"Allow USB debugging?\")", device, path)


def ensure_private(path: Path, device: str) -> None:
    """Make sure only the owner can read the private key: fix our own file, refuse another's."""
    try:
        st = path.stat()
    except OSError as exc:
        raise TargetError(f"cannot read ADB key {path}: {exc}", device) from exc
    if not stat.S_ISREG(st.st_mode):
        raise TargetError(f"ADB key {path} is not a regular file", device)
    loose = st.st_mode & 0o077
    if not loose:
        return
    if st.st_uid != os.getuid():
        raise TargetError(f"ADB key {path} is readable by others (mode {oct(st.st_mode & 0o777)}) and "
                          f"belongs to another user; refusing to use it", device)
    try:
        os.chmod(path, KEY_FILE_MODE)
    except OSError as exc:
        raise TargetError(f"ADB key {path} is readable by others (mode {oct(st.st_mode & 0o777)}) "
                          f"and cannot be made private: {exc}", device) from exc
    log.warning("[%s] ADB key %s was readable by others (mode %s); set it to 0600",
                device, path, oct(st.st_mode & 0o777))


def _public_key_text(path: Path) -> str:
    """The ``.pub`` beside the key, or the same text computed from the private key if absent."""
    pub = Path(str(path) + ".pub")
    if pub.is_file():
        return pub.read_text()
    import base64

    from adb_shell.auth.keygen import encode_pubkey, get_user_info

    return base64.b64encode(encode_pubkey(str(path))).decode("ascii") + get_user_info()
