"""Atomic writes (project/atomic.py), and why checkpoints need them: a SIGKILL at every file
operation of a checkpoint save, with Lightning's own ``TorchCheckpointIO`` and with ours.

The race is controlled, not won: the saving process is a fork of a server that imported torch
and Lightning once; it counts the file operations it makes (Python calls of open, write,
sendfile, rename, torch's write_record, ...) through ``sys.setprofile`` and SIGKILLs itself
just before the N-th one, for N = 1, 2, ... until a save completes. After each kill the test
reads the checkpoint that is left.

What it shows (Lightning 2.6.6, fsspec 2026.9): Lightning serializes the checkpoint to memory,
writes it to a temporary file made by ``tempfile.mkstemp`` (in $TMPDIR, not beside the
checkpoint) and moves that onto the checkpoint. When $TMPDIR is on the checkpoint's file system
the move is a rename and the checkpoint is always whole, but every kill mid-write leaves a
checkpoint-sized file in $TMPDIR. When $TMPDIR is on another file system (a tmpfs /tmp, a node's
local /tmp with checkpoints on a network share) the move is a copy INTO the checkpoint: a kill
then leaves it empty, and ``--ckpt_path last`` is lost. Ours is whole in both cases and leaves
nothing in $TMPDIR.
"""

import io
import json
import os
import signal
import subprocess
import sys
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from project.atomic import PARTIAL, Taken, atomic_write, partial_path, remove_stale
from project.errors import UserError
from project.training.checkpoints import AtomicCheckpointIO
from tests.helpers import ROOT, child_env

FILE_CALLS = {"open", "write", "flush", "close", "__exit__", "sendfile", "copy_file_range", "rename", "replace",
              "link", "unlink", "write_record", "write_end_of_file"}
PARTS, PART_BYTES = 4, 8 * 2**20  # a 32 MB checkpoint


def _save_killed_before(kind: str, path: str, version: int, call: int, tmpdir: str) -> dict:
    """Fork; the child saves checkpoint ``version`` to ``path`` with ``kind``'s CheckpointIO and
    SIGKILLs itself just before its ``call``-th file operation. Returns its exit code and that
    operation's name."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first torch computation, after the fork
        os.close(read)
        tempfile.tempdir = tmpdir
        checkpoint = {"version": version,
                      "weights": {f"w{i}": torch.full((PART_BYTES // 4,), float(version)) for i in range(PARTS)}}
        saver = TorchCheckpointIO() if kind == "lightning" else AtomicCheckpointIO()
        seen = 0

        def before_each_call(frame, event: str, function) -> None:  # noqa: ANN001
            nonlocal seen
            name = getattr(function, "__name__", "")
            if event == "c_call" and name in FILE_CALLS and not frame.f_code.co_filename.startswith("<frozen") \
                    and (name != "__exit__" or isinstance(getattr(function, "__self__", None), io.IOBase)):
                seen += 1
                if seen == call:
                    os.write(write, f"{function.__name__} in {Path(frame.f_code.co_filename).name}".encode())
                    os.kill(os.getpid(), signal.SIGKILL)

        sys.setprofile(before_each_call)
        saver.save_checkpoint(checkpoint, path)
        sys.setprofile(None)
        os._exit(0)
    os.close(write)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    with os.fdopen(read) as f:
        return {"code": code, "at": f.read()}


# --- the helper itself ---


def test_a_file_is_renamed_into_place_and_no_partial_is_left(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target, "x", fix="choose another") as f:
        f.write("new")
        partial = Path(f.name)
        assert partial.parent == tmp_path and partial.name.endswith(f".{os.getpid()}.tmp")
        assert target.read_text() == "old"  # nothing replaced before the body ends
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_any_failure_keeps_the_old_file_and_removes_the_partial(tmp_path: Path, failure: type) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(failure):
        with atomic_write(target, "xb", fix="choose another") as f:
            f.write(b"half")
            raise failure()
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_without_replace_an_existing_target_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "labels.jsonl"
    with atomic_write(target, "x", fix="choose another", replace=False) as f:
        f.write("first")
    with pytest.raises(Taken):
        with atomic_write(target, "x", fix="choose another", replace=False) as f:
            f.write("second")
    assert target.read_text() == "first" and os.listdir(tmp_path) == ["labels.jsonl"]


def test_a_folder_is_renamed_into_place_unless_taken(tmp_path: Path) -> None:
    target = tmp_path / "entry"
    for text in ("first", "second"):
        try:
            with atomic_write(target, fix="choose another", replace=False) as partial:
                partial.mkdir()
                (partial / "meta.json").write_text(text)
        except Taken:
            assert text == "second"
    assert (target / "meta.json").read_text() == "first" and os.listdir(tmp_path) == ["entry"]


def test_a_folder_that_cannot_hold_the_file_is_one_line(tmp_path: Path) -> None:
    message = r"^cannot write in .*missing \(No such file or directory\); fix: choose another$"
    with pytest.raises(UserError, match=message):
        with atomic_write(tmp_path / "missing" / "out.txt", "x", fix="choose another"):
            pass


def test_stale_partials_of_dead_processes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".last.ckpt.project-00ff00ff.{int(done.stdout)}.tmp"
    mine = tmp_path / f".last.ckpt.project-00ff00ff.{os.getpid()}.tmp"
    # A user's files of that shape (2026-12-05 trial: cleanup must remove only what we wrote).
    users = [tmp_path / f".notes.{int(done.stdout)}.tmp", tmp_path / f".last.ckpt.00ff00ff.{int(done.stdout)}.tmp",
             tmp_path / f".x.project-nothex.{int(done.stdout)}.tmp"]
    for path in (dead, mine, *users):
        path.write_bytes(b"partial")
    remove_stale(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([mine.name, *(u.name for u in users)])
    assert PARTIAL.match(partial_path(tmp_path / "last.ckpt").name)


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        target = disk / "last.ckpt"
        # torch.save reports the failed write as a RuntimeError without errno; the helper finds
        # the OSError behind it.
        with pytest.raises(UserError, match=rf"^no space left on the device for {target} \(No space left on "
                                            rf"device\); fix: free some space, or use another disk$"):
            with atomic_write(target, "xb", fix="use another disk") as f:
                torch.save({"w": torch.zeros(300_000)}, f)
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


# --- a SIGKILL at every file operation of a checkpoint save ---


@pytest.fixture(scope="module")
def saver(tmp_path_factory: pytest.TempPathFactory):
    # The fork server: this file run as a script (below), torch and Lightning imported once.
    server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env=child_env(tmp_path_factory.mktemp("saver")))

    def save(**request) -> dict:
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline())

    yield save
    server.stdin.close()
    server.wait(timeout=60)


def another_file_system(tmp_path: Path) -> Path | None:
    """A folder on another file system than ``tmp_path``: /dev/shm, or a tmpfs mounted here."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = shm / f"test_atomic_{os.getpid()}_{tmp_path.name}"
        folder.mkdir()
        return folder
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)], capture_output=True).returncode:
        return None
    return folder


def state(path: Path) -> str:
    """``old`` or ``new`` (a whole checkpoint of version 1 or 2), or what is wrong with it."""
    if not path.exists():
        return "missing"
    try:
        saved = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - anything torch cannot read
        return f"unreadable ({path.stat().st_size} bytes)"
    version = saved["version"]
    assert all(torch.equal(w, torch.full_like(w, version)) for w in saved["weights"].values())
    return {1: "old", 2: "new"}[version]


def kill_at_every_file_operation(saver, kind: str, folder: Path, tmpdir: Path) -> list[tuple[str, str, int]]:
    """(where it was killed, what was left, files left in $TMPDIR) for each file operation."""
    target = folder / "last.ckpt"
    weights = {f"w{i}": torch.full((PART_BYTES // 4,), 1.0) for i in range(PARTS)}
    outcomes = []
    for call in range(1, 200):
        torch.save({"version": 1, "weights": weights}, target)  # the good checkpoint it overwrites
        reply = saver(kind=kind, path=str(target), version=2, call=call, tmpdir=str(tmpdir))
        left = list(tmpdir.iterdir())
        for file in left:
            file.unlink()
        if reply["code"] == 0:  # the save ran to its end: every file operation had its kill
            assert state(target) == "new" and not left
            return outcomes
        assert reply["code"] == -signal.SIGKILL, reply
        outcomes.append((reply["at"], state(target), len(left)))
        remove_stale(folder)
        assert sorted(os.listdir(folder)) == ["last.ckpt"]  # our partials are all removable
    raise AssertionError("the save never ended")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lightning", "ours"])
@pytest.mark.parametrize("tmpdir_on", ["same file system", "another file system"])
def test_a_kill_during_a_checkpoint_save(saver, tmp_path: Path, kind: str, tmpdir_on: str) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    if tmpdir_on == "same file system":
        tmpdir = tmp_path / "tmp"
        tmpdir.mkdir()
    elif (tmpdir := another_file_system(tmp_path)) is None:
        pytest.skip("no second file system here (no /dev/shm, and mounting a tmpfs needs root)")
    try:
        outcomes = kill_at_every_file_operation(saver, kind, folder, tmpdir)
    finally:
        if tmpdir.parent == Path("/dev/shm"):
            tmpdir.rmdir()
        elif tmpdir.name == "tmpfs":
            subprocess.run(["umount", "--lazy", str(tmpdir)], check=False)
    states = {left for _, left, _ in outcomes}
    print(kind, tmpdir_on, *outcomes, sep="\n")
    assert sum(at.startswith("write_record") for at, _, _ in outcomes) >= PARTS, outcomes  # killed mid-write
    if kind == "ours":
        assert outcomes[-1][0] == "replace in atomic.py", outcomes
        assert states == {"old"}, outcomes  # always whole: the old file until the rename (then the new)
        assert not any(files for _, _, files in outcomes)  # nothing written to $TMPDIR
        return
    if tmpdir_on == "same file system":
        assert outcomes[-1][0] == "rename in shutil.py", outcomes
        assert states == {"old"}, outcomes  # fsspec's rename: whole ...
        assert any(files for _, _, files in outcomes)  # ... but a kill mid-write leaves its temporary file
        return
    # The copy from $TMPDIR opens the checkpoint for writing (truncating it) and then fills it.
    broken = [(at, left) for at, left, _ in outcomes if left not in ("old", "new")]
    assert broken and all(at.startswith(("sendfile", "copy_file_range", "write")) for at, _ in broken), outcomes
    assert broken[0][1] == "unreadable (0 bytes)", outcomes


if __name__ == "__main__":  # the fork server: one JSON request per line on stdin, one reply each
    for line in sys.stdin:
        print(json.dumps(_save_killed_before(**json.loads(line))), flush=True)


@pytest.mark.parametrize("where", ["current folder", "cache folder", "run folder"])
def test_rows_88_90_a_folder_that_cannot_be_written_is_one_line_before_any_work(where: str,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Root writes anywhere: as root the CLI runs as 'nobody' (helpers.run_cli_as_nobody)."""
    from tests.helpers import TINY, assert_contract, run_cli_as_nobody, write_splits

    tmp = Path(tempfile.mkdtemp())
    try:
        tmp.chmod(0o777)
        (tmp / "data").mkdir()
        files = write_splits(tmp / "data")
        locked, work = tmp / "locked", tmp / "work"
        locked.mkdir(mode=0o555)
        work.mkdir()
        work.chmod(0o777)  # past the umask
        locked.chmod(0o555)
        args = ["fit", f"--data.data_files={files}", "--data.text_column=sentence", "--trainer.max_steps=1", *TINY,
                f"--data.cache_dir={locked if where == 'cache folder' else work / 'cache'}"]
        if where == "run folder":
            args.append(f"--trainer.default_root_dir={locked / 'runs'}")  # to be made inside the locked one
        monkeypatch.chdir(locked if where == "current folder" else work)
        code, err = run_cli_as_nobody(args)
        assert_contract(code, err, tmp)
        line = err.strip().splitlines()[-1]
        fix = "--data.cache_dir DIR" if where == "cache folder" else "--trainer.default_root_dir DIR"
        assert code == 2 and line.startswith("error: cannot write in ") and "permission denied" in line and fix in line
        assert not list(locked.iterdir())  # nothing half-written
        assert "Tokenized data" not in err  # refused before the work, not after it
    finally:
        monkeypatch.chdir(ROOT)
        shutil.rmtree(tmp, ignore_errors=True)
