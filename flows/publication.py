"""Publishing a run's folder all or nothing: a reader (or a killed run) never sees one run's findings.json
beside another run's report.html (or breaches.csv).

The run's files are written into a fresh hidden sibling folder (`.NAME.publishing-PID-RANDOM`), flushed to
disk, and then swapped in with one rename: onto a new name with rename(2), over a previous report's folder
with renameat2(RENAME_EXCHANGE), which exchanges the two folders atomically (Linux 3.15+, on ext4, xfs,
btrfs, tmpfs). The previous run's files, now under the hidden name, are deleted after. Where the file
system cannot exchange, the previous folder is renamed aside first: between the two renames the folder is
missing for an instant, never mixed. A hidden sibling left by a killed run (its process is gone) is removed
by the next publication into the same folder.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from audits.errors import ConfigError
from flows.processes import is_alive

RUN_FILES = ("findings.json", "report.html", "breaches.csv")  # what a previous report's folder may hold
NOT_A_REPORT_FOLDER = (
    "{path}: holds files that are not a report's ({names}); publish into an empty folder or a previous "
    "report's folder (--out, out_dir)"
)
NOT_A_FOLDER = "{path}: is a file, not a folder; choose a folder for the report (--out, out_dir)"
_STAGING = ".{name}.publishing-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_CANNOT_EXCHANGE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def check_publishable(target: Path) -> None:
    """Fail, naming the folder, when publishing into `target` would replace anything but a previous report."""
    target = Path(target)
    if target.is_file():
        raise ConfigError(NOT_A_FOLDER.format(path=target))
    if not target.is_dir():
        return
    foreign = sorted(name for name in os.listdir(target) if name not in RUN_FILES and not name.startswith("."))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ConfigError(NOT_A_REPORT_FOLDER.format(path=target, names=shown))


def publish_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(folder)` on a fresh folder beside `target`, then make it `target` in one step."""
    target = Path(target)
    check_publishable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    staging = target.with_name(f"{_STAGING.format(name=target.name)}{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(staging)  # not mkdtemp: the published folder keeps the umask's permissions, not 0700
    try:
        write(staging)
        _flush(staging)
        _swap_in(staging, target)
        _flush_folder(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the previous run's files, or the staging folder on failure


def _swap_in(staging: Path, target: Path) -> None:
    """Make `staging` the folder `target`; a previous `target` ends up under the name `staging`."""
    try:
        os.rename(staging, target)  # no previous folder (or an empty one): one rename
        return
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(staging), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in _CANNOT_EXCHANGE:
            raise OSError(code, os.strerror(code), str(target))
    aside = staging.with_name(staging.name + "-previous")
    os.rename(target, aside)
    os.rename(staging, target)
    os.rename(aside, staging)


def _remove_abandoned(target: Path) -> None:
    """Delete hidden siblings of `target` left by publications whose process is gone (killed mid-way)."""
    prefix = _STAGING.format(name=target.name)
    for sibling in target.parent.glob(f"{prefix}*"):
        pid = sibling.name.removeprefix(prefix).split("-", 1)[0]
        if pid.isdigit() and not is_alive(int(pid)):
            shutil.rmtree(sibling, ignore_errors=True)


def _flush(folder: Path) -> None:
    """fsync the folder's files and the folder, so that after a crash the swapped-in folder is complete."""
    for path in folder.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _flush_folder(folder)


def _flush_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
