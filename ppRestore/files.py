"""File-system helpers every layer shares: one atomic writer, one folder lister.

Kept free of paddle and of the rest of ppRestore so any module (weights, data,
inference) can import it without cycles.
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable, Iterable, List

__all__ = ["atomic_write", "list_folder"]


def _chmod_default(path: str) -> None:
    # mkstemp creates 0600 files; give them the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(
    path: str,
    write_fn: Callable[[BinaryIO], None],
    *,
    prefix: str = ".tmp-",
    suffix: str = "",
    fsync: bool = True,
    check: Callable[[str], None] | None = None,
) -> str:
    """Write ``path`` through a temporary file in the same folder, renamed over ``path``
    only when complete: a crash, a full disk or a failed ``check`` never leaves a
    half-written file under ``path`` (and overwriting an input in place is safe up to
    the rename). Returns ``path``.

    Args:
        write_fn: writes the content into the open binary file.
        prefix, suffix: of the temporary name (hidden by default, so folder listers
            skip it; a suffix keeps the extension for tools that look at it).
        fsync: flush to disk before the rename (weights, checkpoints, downloads).
        check: called with the temporary path before the rename (e.g. a checksum);
            whatever it raises discards the file.

    Raises:
        OSError: the folder cannot be created or written (the temporary file is removed).
    """
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        _chmod_default(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def list_folder(folder: str, extensions: Iterable[str]) -> List[str]:
    """Sorted paths of the files directly in ``folder`` whose extension (any letter
    case) is one of ``extensions``; hidden files and sub-folders are skipped.

    Callers word the empty case themselves (a dataset, an image folder and a raw folder
    say different things). Raises OSError when the folder cannot be listed.
    """
    exts = tuple(e.lower() for e in extensions)
    return sorted(
        os.path.join(folder, n)
        for n in os.listdir(folder)
        if not n.startswith(".")
        and os.path.splitext(n)[1].lower() in exts
        and os.path.isfile(os.path.join(folder, n))
    )
