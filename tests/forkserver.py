"""``python -m project`` commands run as forked children of one process that imported the
project once: a tiny fit's process spends most of its seconds importing torch, Lightning and
datasets, so generated kill tests fork instead. Each child is a whole process running the real
``main`` (a SIGKILL kills it alone, its exit status is its own). The server computes nothing
with torch before forking, so no thread pool is copied half-started into a child.

Protocol: one JSON request per line on stdin, ``{"args": [...], "log": path, "kill_at": null or
[audit event, path pattern]}``; one JSON reply per line on stdout, ``{"rc": exit status, negative
for a signal}``. ``kill_at``: the child SIGKILLs itself at that file operation (killer.py). The
client is helpers.ForkServer."""

import json
import os
import sys
import traceback

from project.commands.cli import main
from tests.killer import kill_at_file_operation


def run(args: list[str], log: str, kill_at: list[str] | None = None) -> int:
    pid = os.fork()
    if pid:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(out, 2)
    if kill_at:
        kill_at_file_operation(*kill_at)
    code = 0
    try:
        main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - a traceback is what the test looks for
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps({"rc": run(request["args"], request["log"], request.get("kill_at"))}), flush=True)
