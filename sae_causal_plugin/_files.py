"""Write files and folders so that a reader never sees half of them: the package's one staged writer.

:func:`staged_dir` yields an empty staging folder ``.NAME.staging-PID-XXXX`` beside the target
``NAME``; when the block finishes, the staged files are moved into place, and on any error
(``KeyboardInterrupt`` included) the staging folder is removed and the target is left as it was.

* Merge (default): one ``rename`` when the target does not exist yet, else one ``os.replace``
  per file (``index.html`` last); files of the target the staging folder does not hold are kept.
* ``replace=True``: the target is swapped for the staging folder (two renames) and its old
  content deleted.  Where a folder cannot be renamed in place (the target is the current
  folder or above it, a mount point or a symlink, or ``rename`` fails, e.g. across file systems)
  the new files are moved in one by one (copied where a move cannot be done in place) and the
  old ones deleted afterwards.

:func:`staged_file` does the same for one file (``.NAME.staging-PID-XXXX`` in the same folder,
then ``os.replace``).  Paths may be relative or absolute, ``.`` included.  Files and folders are
given the usual permissions (``0o666`` / ``0o777`` less the umask), whatever rights the writer
that made them chose.  Ctrl-C / SIGTERM
arriving while files are moved into place is held until the move is done.

A run killed with SIGKILL cannot remove its staging folder; :func:`clean_stale` (called by
:func:`check_target_dir` and by both writers) removes those of processes that no longer run,
and puts back a target that was being swapped when the process died.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sae_causal_plugin._interrupts import held

#: moved last, so a reader who sees the new index also sees every file it links to.
LAST_FILES = ("index.html",)
_STAGING, _OLD = "staging", "old"


def check_target_dir(target: str | Path, *, what: str = "output folder") -> Path:
    """``target`` as a ``Path``; ``ValueError`` when it exists and is not a folder.

    Also removes staging folders that killed runs left beside it (:func:`clean_stale`).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{what} {target} exists and is a file; pass a folder path instead")
    clean_stale(target)
    return target


@contextmanager
def staged_dir(target: str | Path, *, what: str = "output folder", replace: bool = False) -> Iterator[Path]:
    """Yield a staging folder whose files replace those of ``target`` on success.

    By default files already in ``target`` that the staging folder does not hold are kept, so
    other tools' outputs in the same folder survive; with ``replace=True`` the whole folder is
    swapped for the staging folder and its old content deleted.
    """
    check_target_dir(target, what=what)
    target = _absolute(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = None
    try:
        with held():  # no interrupt between making the folder and knowing its name
            staging = _new_name(target, _STAGING, make_dir=True)
        yield staging
        _usual_rights(staging)
        with held():
            if replace and target.exists():
                _replace_dir(staging, target)
            else:
                _publish(staging, target)
    finally:
        with held():  # an interrupt here would leave half a staging folder behind
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """Yield a fresh path beside ``path``; once the block has written it, it replaces ``path``.

    On any error the half-written file is removed and ``path`` is left as it was.
    """
    path = _absolute(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    staging = _new_name(path, _STAGING, make_dir=False)
    try:
        yield staging
        if not staging.is_file():
            raise FileNotFoundError(f"nothing was written to {staging} for {path}")
        _usual_rights(staging)
        with held():
            _move_file(staging, path)
    finally:
        with held():
            staging.unlink(missing_ok=True)


@contextmanager
def removed_on_error(folder: str | Path) -> Iterator[Path]:
    """Run a block that writes into ``folder``; if it raises (Ctrl-C included), remove what the block
    added: ``folder`` itself when it did not exist before, else the entries of it that are new.  Entries
    that were there before are left as they were."""
    folder = _absolute(folder)
    existed = folder.is_dir()
    before = set(folder.iterdir()) if existed else set()
    try:
        yield folder
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        elif folder.is_dir():
            for path in set(folder.iterdir()) - before:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def clean_stale(target: str | Path) -> list[Path]:
    """Remove ``.NAME.staging-*`` / ``.NAME.old-*`` left beside ``target`` by processes that are gone
    (also the nested ``..NAME.staging-*.staging-*`` of a save inside a staging folder).

    A target missing while a dead run's ``.NAME.old-*`` still holds it (killed mid-swap) is put
    back first.  Returns the removed paths.
    """
    target = _absolute(target)
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return []
    # also a staging folder's own nested staging (``..NAME.staging-P-X.staging-Q-Y``) and staged files' suffix
    pattern = re.compile(rf"\.+{re.escape(target.name)}\.({_STAGING}|{_OLD})-(\d+)-[0-9a-f]{{8}}(?:\..*)?$")
    removed = []
    for path in sorted(siblings, key=lambda p: p.name):
        match = pattern.match(path.name)
        if match is None or _alive(int(match.group(2))):
            continue
        kept = path / target.name
        if match.group(1) == _OLD and kept.is_dir() and not os.path.lexists(target):
            os.rename(kept, target)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)  # elsewhere: set and put back at once
    os.umask(current)
    return current


def _usual_rights(path: Path) -> None:
    """Give ``path`` (and everything under a folder) the rights a new file gets: 0o666 / 0o777 less the umask.

    Some writers (safetensors, mkstemp) create files readable by their owner only.
    """
    mask = umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        executable = p.is_dir() or p.stat().st_mode & 0o111
        os.chmod(p, (0o777 if executable else 0o666) & ~mask)


def _absolute(path: str | Path) -> Path:
    """``path`` made absolute without resolving symlinks (``.`` becomes the current folder's path)."""
    return Path(os.path.abspath(os.fspath(path)))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _new_name(target: Path, kind: str, *, make_dir: bool) -> Path:
    """A fresh ``.NAME.KIND-PID-XXXXXXXX`` beside ``target`` (made as a folder when ``make_dir``, else
    not made and ending in the target's suffix)."""
    while True:
        # a staged file keeps the suffix: writers such as savefig pick the format from it
        suffix = "" if make_dir else target.suffix
        path = target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        if not make_dir:
            if not os.path.lexists(path):
                return path
            continue
        try:
            os.mkdir(path)  # mode 0o777 less the umask, unlike mkdtemp's 0o700
        except FileExistsError:
            continue
        return path


def _in_place_renamable(target: Path) -> bool:
    """Whether the folder ``target`` may be renamed: not a symlink, mount point, nor the current folder or above."""
    if target.is_symlink() or os.path.ismount(target):
        return False
    try:
        cwd = Path(os.getcwd())
    except OSError:
        return True
    return not (cwd == target or target in cwd.parents)


def _replace_dir(staging: Path, target: Path) -> None:
    if _in_place_renamable(target):
        old = _new_name(target, _OLD, make_dir=True)
        try:
            os.rename(target, old / target.name)
        except OSError:
            old.rmdir()
        else:
            try:
                os.rename(staging, target)
            except OSError:
                os.rename(old / target.name, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                shutil.rmtree(old, ignore_errors=True)
                return
    new = {p.relative_to(staging) for p in staging.rglob("*")}
    _publish(staging, target)
    for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.relative_to(target) not in new:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _publish(staging: Path, target: Path) -> None:
    if not os.path.lexists(target):
        try:
            os.rename(staging, target)
            return
        except OSError:
            target.mkdir(parents=True)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(staging).as_posix() in LAST_FILES)
    for path in files:
        dest = target / path.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _move_file(path, dest)


def _move_file(src: Path, dest: Path) -> None:
    """``os.replace``; across file systems, a copy beside ``dest`` first, then ``os.replace``."""
    try:
        os.replace(src, dest)
        return
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EBUSY):
            raise
    tmp = _new_name(dest, _STAGING, make_dir=False)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    src.unlink(missing_ok=True)
