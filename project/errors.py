"""The errors a user sees as one line: input they can fix (a flag, a config, a data file, a
checkpoint, a model size this machine cannot hold). ``python -m project`` prints the line as
``error: ...`` and exits with code 2. Anything else that escapes is a bug, shown with its
traceback; ``PROJECT_DEBUG=1`` shows the traceback of every error, these included.

Errors are told apart by their type, never by where they were raised: ``UserError`` (ours),
Lightning's ``MisconfigurationException`` (its refusal of a Trainer setting), a full disk, and
out of memory (``torch.OutOfMemoryError`` on a GPU; on the CPU torch raises a plain
RuntimeError from its allocator, which is told by the allocator's own words). Lightning's and
torch's types are looked up among the modules already imported: an error cannot be of a type
whose module never loaded, and a command that needs neither starts without them."""

import codecs
import errno
import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SMALLER = "lower --model.hidden_size, --model.embedding_dim, --data.max_vocab_size or --data.batch_size"
CPU_ALLOCATOR = "DefaultCPUAllocator: can't allocate memory"


class UserError(ValueError):
    """Input the user can fix: the message names the problem and the fix, on one line (any
    line breaks of a quoted reader error are folded into it)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class Stopped(Exception):
    """A fit stopped by SIGINT or SIGTERM after writing last.ckpt (checkpoints.py)."""

    def __init__(self, signum: int, step: int, path: str) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; saved {path}")
        self.signum, self.path = signum, path


def _is(error: BaseException, module: str, name: str) -> bool:
    """Whether ``error`` is a ``module.name``, without importing ``module``."""
    return module in sys.modules and isinstance(error, getattr(sys.modules[module], name))


def user_line(error: BaseException) -> str | None:
    """The one line (``problem; fix: ...``) for an error the user can fix; None for a bug."""
    if isinstance(error, UserError):
        return str(error)
    if _is(error, "lightning.fabric.utilities.exceptions", "MisconfigurationException"):
        return f"{' '.join(str(error).split())}; fix: change the --trainer setting it names"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        from project.atomic import no_space  # noqa: PLC0415 - atomic.py imports this module

        return str(no_space(error.filename or "a file", error))
    if _is(error, "torch", "OutOfMemoryError") or (isinstance(error, RuntimeError) and CPU_ALLOCATOR in str(error)):
        tried = re.search(r"tried to allocate ([\d.]+ \w+|\d+ bytes)", str(error))
        return (f"not enough memory for this model and batch{f' (it asked for {tried.group(1)})' if tried else ''}; "
                f"fix: {SMALLER}")
    return None


@contextmanager
def one_line(after_a_stop: str, command: str = "fit") -> Iterator[None]:
    """A command's end as a user reads it: its own error line and exit code 2, or what a stop
    kept (``after_a_stop``) and 128 + the signal; a bug goes on with its traceback."""
    try:
        yield
    except Stopped as stop:  # Ctrl-C or SIGTERM mid-fit: last.ckpt holds every finished step
        # The checkpoint itself: "--ckpt_path last" takes the newest run under the root, which
        # need not be this one (another run may have started since).
        print(f"{stop}; to go on: python -m project {command} <the same arguments> --ckpt_path {stop.path}",
              file=sys.stderr)
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:  # outside training steps (data, test): nothing to save
        print(f"stopped by SIGINT; {after_a_stop}", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except SystemExit as exit_:  # a SystemExit of Lightning's SIGTERM handler, or a command's own exit code
        if not _is(exit_, "lightning.pytorch.utilities.exceptions", "SIGTERMException"):
            raise
        print(f"stopped by SIGTERM; {after_a_stop}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:
        if (line := user_line(error)) is None or os.environ.get("PROJECT_DEBUG") == "1":
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


def resave_as_utf8(head: bytes) -> str:
    """The fix for a file that is not UTF-8, from its first bytes: UTF-16 says so with its byte
    order mark (then ``iconv -f latin1`` would turn it into mojibake); anything else is most
    often Latin-1 / Windows-1252."""
    was = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "latin1"
    return f"fix: re-save it as UTF-8, e.g. iconv -f {was} -t utf-8"
