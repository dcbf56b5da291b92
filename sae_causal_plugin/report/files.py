"""Write a folder of files so that a reader never sees half of it.

:func:`staged_dir` yields an empty staging folder beside the target; when the block finishes
the staged files are moved into place (one ``rename`` when the target does not exist yet, else
one ``os.replace`` per file, ``index.html`` last), and on any error the staging folder is
removed and the target is left as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: moved last, so a reader who sees the new index also sees every file it links to.
LAST_FILES = ("index.html",)


def check_target_dir(target: str | Path, *, what: str = "output folder") -> Path:
    """``target`` as a ``Path``; ``ValueError`` when it exists and is not a folder."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{what} {target} exists and is a file; pass a folder path instead")
    return target


@contextmanager
def staged_dir(target: str | Path, *, what: str = "output folder", replace: bool = False) -> Iterator[Path]:
    """Yield a staging folder whose files replace those of ``target`` on success.

    By default files already in ``target`` that the staging folder does not hold are kept, so
    other tools' outputs in the same folder survive; with ``replace=True`` the whole folder is
    swapped for the staging folder (two renames) and its old content deleted.
    """
    target = check_target_dir(target, what=what)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the target gets normal rights
    try:
        yield staging
        if replace and target.exists():
            _swap(staging, target)
        else:
            _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _swap(staging: Path, target: Path) -> None:
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(staging).as_posix() in LAST_FILES)
    for path in files:
        dest = target / path.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
