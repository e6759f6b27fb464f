"""The one error type a user sees: input they can fix (a flag, a config, a data file, a
checkpoint, a model size this machine cannot hold). Its message names the problem and the fix
on one line; ``python -m project`` prints it as ``error: ...`` and exits with code 2. Anything
else that escapes is a bug, shown with its traceback."""


class UserError(ValueError):
    """Input the user can fix: the message names the problem and the fix, on one line (any
    line breaks of a quoted reader error are folded into it)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
