"""The data dir and thingport's files in it are for their owner only (0700 and 0600), whatever the umask:
they hold payloads, history, device addresses, the master key and the TLS key."""

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path``, created 0700 when missing (its missing parents as the umask says). A dir that already
    exists keeps its mode: the operator may have made it, for a group of their own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return path
    os.chmod(path, DIR_MODE)  # the umask may have taken owner bits away
    return path


def private_file(path: Path) -> Path:
    """``path`` made 0600: created empty when missing, narrowed when others could read it (a file of an
    older thingport, or one copied in). An existing file is never opened: closing any descriptor of an
    SQLite database drops every POSIX lock this process holds on it, other connections' included."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        narrow_existing(path)
    return path


def narrow_existing(*paths: Path) -> None:
    """Make each of ``paths`` that exists 0600 (SQLite's -wal and -shm files left by an older thingport)."""
    for path in paths:
        try:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, FILE_MODE)
        except FileNotFoundError:
            pass
