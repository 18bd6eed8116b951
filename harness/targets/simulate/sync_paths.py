"""Where the ``sync:`` service touches the device's files: never by a checked path's name again.

The device can change its files while sync works (swap a folder on a path sync has just checked for
a symlink out of its root), so a checked host path is reached from the root one component at a time
without following symlinks (``O_NOFOLLOW``), and sync works relative to that folder's descriptor; a
file opened through a final symlink (RECV, STA2, LIST follow it) is checked again through
``/proc/self/fd``. Either way a swapped path fails (ELOOP, ENOTDIR, EACCES) instead of leading out.
"""

from __future__ import annotations

import errno
import os
import stat

SEND_DIR_MODE = 0o775  # parent folders SEND creates (adbd secure_mkdirs)
DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC  # a folder pinned to walk from, never read


def inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _denied() -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES))


def folder_fd(root: str, folder: str, create: bool = False) -> int:
    """A descriptor of ``folder`` (a checked host path inside ``root``, symlinks resolved), walked to
    from ``root`` following no symlink; ``create`` makes missing folders on the way (SEND)."""
    if not inside(root, folder):
        raise _denied()
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in os.path.relpath(folder, root).split(os.sep):
            if part in ("", "."):
                continue
            if create:
                try:
                    os.mkdir(part, SEND_DIR_MODE, dir_fd=fd)
                except FileExistsError:
                    pass
            fd, parent = os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd), fd
            os.close(parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_inside(root: str, host: str, flags: int, follow: bool) -> int:
    """``host`` opened through its pinned folder; one opened through a final symlink is checked to
    lie inside ``root`` (the symlink may have changed since the check)."""
    head, name = (host, ".") if host == root else os.path.split(host)
    folder = folder_fd(root, head)
    try:
        fd = os.open(name, flags | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW), dir_fd=folder)
    finally:
        os.close(folder)
    if follow and not inside(root, os.readlink(f"/proc/self/fd/{fd}")):
        os.close(fd)
        raise _denied()
    return fd


def create_file(folder: int, name: str) -> int:
    """Replace a regular file or symlink ``name`` in ``folder`` (a descriptor) with a new empty file."""
    try:
        st = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        os.unlink(name, dir_fd=folder)
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=folder)


def unlink_quietly(folder: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except OSError:
        pass


def fstat_closed(fd: int) -> os.stat_result:
    """fstat of ``fd``, which is then closed."""
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)
