"""Writing a file or a folder atomically: its content goes to a partial path beside the target
(same folder, so same file system: the rename cannot turn into a copy), which is renamed onto the
target only when the writing ended well. A reader sees the old whole target or the new whole one,
never half of one. Any failure (Ctrl-C and SystemExit included) removes the partial; a full disk
or quota is one line naming the file. A SIGKILL leaves the partial, ``.NAME.TOKEN.PID.tmp``:
``remove_stale`` removes those of processes that are gone.

Used for checkpoints, the tokenized-data cache, compare's run records and predict's output.
"""

import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from project.errors import UserError

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
DISKS = "point --trainer.default_root_dir / --data.cache_dir at another disk"


class Taken(FileExistsError):
    """``replace=False`` and the target exists (or appeared while writing): nothing was replaced."""


def no_space(path: Any, error: OSError, fix: str = DISKS) -> UserError:
    return UserError(f"no space left on the device for {path} ({error.strerror}); fix: free some space, or {fix}")


DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _behind(error: BaseException, errnos: tuple[int, ...]) -> OSError | None:
    """The OSError of one of ``errnos`` behind ``error``: torch.save, for one, turns a failed
    write into a RuntimeError without errno, whose context is the OSError."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in errnos:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _full_disk(error: BaseException) -> OSError | None:
    return _behind(error, FULL)


def check_writable(folder: str | os.PathLike, fix: str) -> None:
    """Refuse, in one line, a folder this process cannot write in (or create): checked before
    any work whose result would go there, not found out by a traceback at the end of it."""
    path = Path(os.path.abspath(folder))
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot write in {folder}: {existing} is a file, not a folder; fix: {fix}")
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        why = "a read-only file system" if read_only else "permission denied"
        where = "" if existing == path else f" (its folder {existing})"
        raise UserError(f"cannot write in {folder}{where}: {why}; fix: {fix}")


# A partial's name says it is ours and whose: ".<target>.project-<token>.<pid>.tmp". Cleanup
# removes only names of this form: a user's own ".notes.123.tmp" was taken for one (2026-12-05 trial).
PARTIAL = re.compile(r"^\..+\.project-[0-9a-f]{8}\.(\d+)\.tmp$")


def partial_path(target: Path) -> Path:
    # The token: two writers in one process (or a pid reused) never share a partial file.
    return target.with_name(f".{target.name}.project-{secrets.token_hex(4)}.{os.getpid()}.tmp")


def remove_stale(folder: Path) -> None:
    """Remove the partial files and folders left in ``folder`` by processes of ours that are
    gone (a SIGKILL skips every cleanup), and nothing else. Only for a folder written from one
    machine: a pid of another node's live process may be unknown here."""
    for partial in folder.glob(".*.project-*.tmp"):
        if not (ours := PARTIAL.match(partial.name)):
            continue
        try:
            os.kill(int(ours.group(1)), 0)
        except ProcessLookupError:
            _remove(partial)
        except PermissionError:  # a live process of another user
            pass


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _commit(partial: Path, target: Path, replace: bool) -> None:
    if replace:
        os.replace(partial, target)
    elif partial.is_dir():
        try:  # fails on a target folder that has content
            os.rename(partial, target)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise Taken(errno.EEXIST, "exists", str(target)) from None
            raise
    else:
        try:  # a hard link fails if the name is taken: an existing target is never replaced
            os.link(partial, target)
        except FileExistsError:
            raise Taken(errno.EEXIST, "exists", str(target)) from None
        except OSError:  # a file system without hard links: check, then rename
            if os.path.lexists(target):
                raise Taken(errno.EEXIST, "exists", str(target)) from None
            os.rename(partial, target)
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_write(target: str | os.PathLike, mode: str | None = None, *, fix: str, replace: bool = True,
                 encoding: str = "utf-8") -> Iterator[Any]:
    """Yield a partial path beside ``target`` (``mode`` None: the body makes the file or
    folder), or that path opened with ``mode`` ("x", "xb": created, so never someone else's
    file); renamed onto ``target`` when the body ends.

    Args:
        fix: What the user can do instead, for the one-line errors: a folder that cannot be
            written in, a full disk (``free some space, or <fix>``).
        replace: Replace an existing target. False: raise ``Taken`` if the target exists when
            the body ends (a file is hard-linked into place, so one that appears meanwhile is
            kept too); the partial is removed.
        encoding: Of a text ``mode``.
    """
    target = Path(target)
    partial = partial_path(target)
    handle: IO | None = None
    if mode is not None:
        try:
            handle = open(partial, mode, encoding=None if "b" in mode else encoding)  # noqa: SIM115
        except OSError as error:
            if error.errno in FULL:
                raise no_space(target, error, fix) from None
            raise UserError(f"cannot write in {target.parent} ({error.strerror}); fix: {fix}") from None
    try:
        if handle is None:
            yield partial
        else:
            with handle:
                yield handle
        _commit(partial, target, replace)
    except BaseException as error:
        _remove(partial)
        if full := _full_disk(error):
            raise no_space(target, full, fix) from None
        # A write the body was refused under the partial (not, say, a data file it could not read).
        if (denied := _behind(error, DENIED)) and str(denied.filename or "").startswith(str(partial)):
            raise UserError(f"cannot write in {target.parent} ({denied.strerror}); fix: {fix}") from None
        raise
