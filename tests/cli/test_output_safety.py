"""Issue 10 (classes 3, 4 and the long file name of 8): outputs never destroy a file and are written
as one set.

An output that is an input or another output is refused before the render (exit 2, one line naming
both flags); symlinks, FIFOs and character devices are written through, never replaced; the set of
outputs is staged and moved in together, and a failed move (simulated and real) or a signal while
moving puts every file back; SIGINT, SIGTERM and SIGHUP sent to a real process while it renders or
while it writes leave no staged file and no output (exit 128 + N, one line); a closed, full or
broken stdout never costs the files.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from golden import GOLDEN, ROOT
from pybragg.cli.main import file_flags, main
from pybragg.errors import Interrupted
from pybragg.io.atomic import STAGE_PREFIX, commit_files, write_bytes

INPUTS = GOLDEN / "inputs"
CELL = ["-cell", "100", "100", "100", "90", "90", "90"]
BASE = ["-default_F", "100", "-N", "5", "-detpixels", "48", "-seed", "9", "--backend", "c", "-noprogress"]
SMALL = [*CELL, *BASE]
OUTS = ["-floatfile", "float.bin", "-intfile", "int.img", "-pgmfile", "image.pgm", "-noisefile", "noise.img"]
#: a render of tens of seconds on one thread (a signal comes long before it ends)
SLOW = [*CELL, "-default_F", "100", "-N", "5", "-detpixels", "512", "-oversample", "4", "-mosaic", "1",
        "-mosaic_dom", "500", "-seed", "9", "--backend", "c", "--threads", "1", "-progress"]
SIGNALS = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p)])
    out.setdefault("OMP_NUM_THREADS", "2")
    out.update(extra)
    return out


COMMAND = [sys.executable, "-m", "pybragg"]


def staged(folder: Path) -> list[str]:
    return sorted(p for p in os.listdir(folder) if p.startswith(STAGE_PREFIX))


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry of ``folder``: a file's bytes, a link's target, or its kind."""
    out: dict[str, bytes | str] = {}
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if path.is_symlink():
            out[name] = "-> " + os.readlink(path)
        elif path.is_file():
            out[name] = path.read_bytes()
        else:
            out[name] = stat.filemode(path.lstat().st_mode)
    return out


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("pybragg: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of OUTS from a plain run (every test's files must equal them)."""
    folder = tmp_path_factory.mktemp("reference")
    here = os.getcwd()
    os.chdir(folder)
    try:
        assert main([*SMALL, *OUTS, "-q"]) == 0
    finally:
        os.chdir(here)
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


# --------------------------------------------------------------------------- refused paths


def _stol(path: Path) -> None:
    path.write_text("0.0 1.0\n0.2 2.0\n0.5 1.5\n1.0 1.0\n")


@pytest.mark.parametrize("flag, make, args", [
    ("-hkl", lambda p: p.write_text("0 0 0 100\n1 0 0 50\n"), SMALL),
    ("-mat", lambda p: shutil.copy(INPUTS / "A_hex.mat", p), BASE),
    ("-sourcefile", lambda p: shutil.copy(INPUTS / "sources.txt", p), SMALL),
    ("-img", lambda p: shutil.copy(INPUTS / "header160x140.img", p), SMALL),
    ("-mask", lambda p: shutil.copy(INPUTS / "mask128.img", p), SMALL),
    ("-stol", _stol, SMALL),
])
def test_an_output_that_is_an_input_is_refused(flag, make, args, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path / "in.dat")
    before = snapshot(tmp_path)
    for out_flag in ("-floatfile", "-noisefile"):
        assert main([*args, flag, "in.dat", *OUTS, out_flag, "in.dat"]) == 2
        line = one_error(capsys.readouterr().err)
        assert out_flag in line and flag in line and "in.dat" in line
        assert snapshot(tmp_path) == before  # the input as it was, nothing written


def test_the_dump_cache_is_neither_the_hkl_file_nor_an_output(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.hkl").write_text("0 0 0 100\n1 0 0 50\n")
    before = snapshot(tmp_path)
    for args, names in (
        (["-dump", "one.hkl"], ("-dump", "-hkl")),
        (["-dump", "cache.bin", "-intfile", "cache.bin"], ("-dump", "-intfile")),
        (["-floatfile", "Fdump.bin"], ("-dump", "-floatfile")),  # the default cache name
    ):
        assert main([*SMALL, "-hkl", "one.hkl", *args]) == 2
        line = one_error(capsys.readouterr().err)
        assert all(name in line for name in names), line
        assert snapshot(tmp_path) == before
    # without -hkl an existing cache is an input
    assert main([*SMALL, "-hkl", "one.hkl", "-dump", "cache.bin", "-q", "-floatfile", "f.bin"]) == 0
    cache = (tmp_path / "cache.bin").read_bytes()
    assert main([*SMALL, "-dump", "cache.bin", "-floatfile", "cache.bin"]) == 2
    line = one_error(capsys.readouterr().err)
    assert "-dump" in line and "-floatfile" in line
    assert (tmp_path / "cache.bin").read_bytes() == cache


def test_outputs_that_share_a_file_are_refused(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.bin").write_bytes(b"old")
    os.link(tmp_path / "old.bin", tmp_path / "hard.bin")
    os.symlink("a.bin", tmp_path / "link.img")  # dangling: the output it names is a.bin
    before = snapshot(tmp_path)
    for args, names in (
        (["-floatfile", "a.bin", "-intfile", "a.bin"], ("-floatfile", "-intfile")),
        (["-floatfile", "a.bin", "-noisefile", "./a.bin"], ("-floatfile", "-noisefile")),
        (["-floatfile", "a.bin", "-intfile", "link.img"], ("-floatfile", "-intfile")),
        (["-floatfile", "old.bin", "-pgmfile", "hard.bin"], ("-floatfile", "-pgmfile")),
        (["-floatfile", "f.bin", "-cbffile", "a.cbf", "-exptfile", "a.cbf"], ("-cbffile", "-exptfile")),
    ):
        assert main([*SMALL, *args]) == 2, args
        line = one_error(capsys.readouterr().err)
        assert all(name in line for name in names), line
        assert snapshot(tmp_path) == before


def test_every_input_flag_of_the_table_is_checked() -> None:
    from pybragg.flags.parse import Invocation
    from pybragg.flags.table import FLAGS, Kind

    for flag in FLAGS:
        if flag.kind is not Kind.PATH:
            continue
        for spelled in flag.names:
            inv = Invocation()
            for target in flag.targets:
                setattr(inv, target, "/some/input")
            _, inputs = file_flags([spelled, "/some/input"], inv)
            assert (spelled, "/some/input") in inputs, (spelled, inputs)


# --------------------------------------------------------------------------- written through


def test_a_symlinked_output_is_written_through(tmp_path, monkeypatch, capsys, reference) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "float.bin").write_bytes(b"old")
    os.symlink("real/float.bin", tmp_path / "f.link")
    os.symlink("real/int.img", tmp_path / "i.link")  # dangling: its target is made
    args = [*OUTS]
    args[1], args[3] = "f.link", "i.link"
    assert main([*SMALL, *args, "-q"]) == 0, capsys.readouterr().err
    assert os.readlink(tmp_path / "f.link") == "real/float.bin"
    assert os.readlink(tmp_path / "i.link") == "real/int.img"
    assert (tmp_path / "real" / "float.bin").read_bytes() == reference["float.bin"]
    assert (tmp_path / "real" / "int.img").read_bytes() == reference["int.img"]
    assert staged(tmp_path) == [] and staged(tmp_path / "real") == []


def test_a_fifo_output_is_written_into(tmp_path, monkeypatch, capsys, reference) -> None:
    monkeypatch.chdir(tmp_path)
    got: dict[str, bytes] = {}
    for name in ("float.bin", "a.expt"):
        os.mkfifo(tmp_path / name)
        threading.Thread(target=lambda n=name: got.update({n: (tmp_path / n).read_bytes()}), daemon=True).start()
    assert main([*SMALL, *OUTS, "-cbffile", "a.cbf", "-exptfile", "a.expt", "-q"]) == 0, capsys.readouterr().err
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "float.bin").st_mode)
    assert got["float.bin"] == reference["float.bin"]
    # the experiment list names its image relative to its own folder (not to where it was staged)
    image = json.loads(got["a.expt"])["imageset"][0]["template"]
    assert image == "a.cbf"
    assert (tmp_path / "int.img").read_bytes() == reference["int.img"]
    assert staged(tmp_path) == []


def _null_device(tmp_path: Path) -> Path:
    """A character device like /dev/null: made in ``tmp_path`` where allowed (root), so that a
    regression would replace that one, not the machine's."""
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        with open(node, "wb") as handle:  # a file system mounted nodev refuses to open it
            handle.write(b"x")
        return node
    except OSError:  # not allowed here (not root, or a nodev file system)
        return Path("/dev/null")


def test_a_character_device_is_written_into_and_may_be_named_twice(tmp_path, monkeypatch, capsys) -> None:
    null = _null_device(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main([*SMALL, "-floatfile", str(null), "-intfile", str(null), "-nopgm", "-nonoise", "-q"]) == 0, \
        capsys.readouterr().err
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert staged(tmp_path) == []


def test_a_254_byte_name_works_and_a_longer_one_is_refused_before_the_render(tmp_path, monkeypatch, capsys,
                                                                              reference) -> None:
    monkeypatch.chdir(tmp_path)
    name = "f" * 250 + ".bin"
    assert main([*SMALL, *OUTS, "-floatfile", name, "-q"]) == 0, capsys.readouterr().err
    assert (tmp_path / name).read_bytes() == reference["float.bin"]
    before = snapshot(tmp_path)
    too_long = "g" * 256
    assert main([*SMALL, *OUTS, "-floatfile", too_long]) == 1
    line = one_error(capsys.readouterr().err)
    assert too_long in line and "too long" in line
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- one transaction


def _failing_on_call(n: int, real=os.replace):
    calls = []

    def replace(src, dst, **kw):
        calls.append(dst)
        if len(calls) == n:
            raise OSError(errno.EIO, "Input/output error (simulated)")
        return real(src, dst, **kw)
    return replace, calls


def test_a_failed_third_move_puts_the_first_two_back(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "float.bin").write_bytes(b"old float")
    (tmp_path / "int.img").write_bytes(b"old int")
    inodes = {n: os.stat(tmp_path / n).st_ino for n in ("float.bin", "int.img")}
    before = snapshot(tmp_path)
    replace, calls = _failing_on_call(3)
    monkeypatch.setattr(os, "replace", replace)
    assert main([*SMALL, *OUTS, "-pngfile", "p.png"]) == 1
    line = one_error(capsys.readouterr().err)
    assert "image.pgm" in line and "Input/output error" in line
    assert [os.path.basename(c) for c in calls[:3]] == ["float.bin", "int.img", "image.pgm"]
    assert snapshot(tmp_path) == before  # old files back (the same inodes), new ones gone, nothing staged
    assert {n: os.stat(tmp_path / n).st_ino for n in inodes} == inodes


def test_a_real_failure_in_the_middle_of_the_commit_puts_everything_back(tmp_path) -> None:
    (tmp_path / "a").write_bytes(b"old a")
    (tmp_path / "c").mkdir()  # the third target is a folder: its move fails
    before = snapshot(tmp_path)
    jobs = [(str(tmp_path / n), lambda p, n=n: write_bytes(p, b"new " + n.encode())) for n in "abcd"]
    with pytest.raises(OSError) as exc:
        commit_files(jobs)
    assert str(exc.value).startswith(str(tmp_path / "c") + ":"), exc.value
    assert snapshot(tmp_path) == before
    commit_files([j for j in jobs if not j[0].endswith("c")])  # and without it, all of them
    assert {n: (tmp_path / n).read_bytes() for n in "abd"} == {n: b"new " + n.encode() for n in "abd"}
    assert staged(tmp_path) == []


def test_a_writer_that_fails_leaves_nothing(tmp_path) -> None:
    (tmp_path / "a").write_bytes(b"old a")
    before = snapshot(tmp_path)

    def broken(path: str) -> None:
        write_bytes(path, b"half")
        raise ValueError("broken writer")
    with pytest.raises(ValueError, match="broken writer"):
        commit_files([(str(tmp_path / "a"), lambda p: write_bytes(p, b"new")), (str(tmp_path / "b"), broken)])
    assert snapshot(tmp_path) == before


def test_a_signal_while_the_files_are_moved_puts_the_set_back(tmp_path, monkeypatch) -> None:
    (tmp_path / "a").write_bytes(b"old a")
    before = snapshot(tmp_path)
    real = os.replace
    calls = []

    def replace(src, dst, **kw):
        calls.append(dst)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # held until the moves are done, then the set goes back
            time.sleep(0.05)
        return real(src, dst, **kw)

    def interrupted(signo, frame):
        raise Interrupted(signo)
    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(Interrupted) as exc:
            commit_files([(str(tmp_path / n), lambda p: write_bytes(p, b"new")) for n in "abc"])
            time.sleep(0.5)  # (where the signal would land if it were not held)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exc.value.signo == signal.SIGTERM
    assert len(calls) >= 3  # every move was made before the signal was handled
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- real signals


def _read_until(proc: subprocess.Popen, marker: bytes, timeout: float) -> bytes:
    """stderr of ``proc`` up to ``marker`` (the progress bar) or its end."""
    fd = proc.stderr.fileno()
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            got += chunk
    return got


def _interrupted_line(err: str, name: str) -> None:
    lines = [line for line in err.split("\n") if line and "\r[" not in line and not line.startswith("[")]
    assert lines == [f"pybragg: interrupted ({name})"], err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", SIGNALS)
def test_a_signal_during_the_render_leaves_no_file(name, tmp_path) -> None:
    signo = getattr(signal, name)
    (tmp_path / "int.img").write_bytes(b"old int")
    before = snapshot(tmp_path)
    proc = subprocess.Popen([*COMMAND, *SLOW, *OUTS], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        head = _read_until(proc, b"[", 120)
        assert b"[" in head, head  # the progress bar: it is rendering
        proc.send_signal(signo)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + signo, (proc.returncode, err[-2000:])
    _interrupted_line((head + err).decode(errors="replace"), name)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", SIGNALS)
def test_a_signal_while_writing_leaves_no_staged_file_and_no_output(name, tmp_path) -> None:
    signo = getattr(signal, name)
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    os.mkfifo(work / "float.bin")  # no reader: opening it to write blocks, after every file was staged
    (work / "int.img").write_bytes(b"old int")
    before = snapshot(work)
    proc = subprocess.Popen([*COMMAND, *SMALL, *OUTS, "-pngfile", "p.png"], cwd=work, env=env(TMPDIR=str(temp)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(staged(work)) == 4 and staged(temp):  # int, pgm, noise, png here; the FIFO's bytes there
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert len(staged(work)) == 4 and staged(temp), (staged(work), staged(temp))
        time.sleep(0.2)  # into the blocking open
        proc.send_signal(signo)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signo, (proc.returncode, err)
    _interrupted_line(err.decode(), name)
    assert out == b""
    assert snapshot(work) == before and os.listdir(temp) == []


# --------------------------------------------------------------------------- stdout


def _run_with_stdout(tmp_path: Path, stdout, preexec=None, extra=()) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *SMALL, *OUTS, *extra], cwd=tmp_path, env=env(), stdout=stdout,
                          stderr=subprocess.PIPE, text=True, preexec_fn=preexec, timeout=300, check=False)


def _files_written(tmp_path: Path, reference: dict[str, bytes]) -> None:
    assert {n: (tmp_path / n).read_bytes() for n in reference} == reference
    assert staged(tmp_path) == []


def test_a_closed_stdout_keeps_the_files(tmp_path, reference) -> None:
    proc = _run_with_stdout(tmp_path, None, preexec=lambda: os.close(1))
    assert proc.returncode == 1
    assert proc.stderr == "pybragg: error: stdout: Bad file descriptor\n"
    _files_written(tmp_path, reference)


def test_a_full_stdout_keeps_the_files(tmp_path, reference) -> None:
    if not os.path.exists("/dev/full"):
        pytest.fail("this test needs /dev/full")
    with open("/dev/full", "w") as full:
        proc = _run_with_stdout(tmp_path, full)
    assert proc.returncode == 1
    assert proc.stderr == "pybragg: error: stdout: No space left on device\n"
    _files_written(tmp_path, reference)


def test_a_broken_pipe_on_stdout_is_quiet_and_keeps_the_files(tmp_path, reference) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is printed (`pybragg ... | head -0`)
    try:
        proc = _run_with_stdout(tmp_path, write)
    finally:
        os.close(write)
    assert proc.returncode == 128 + 13
    assert proc.stderr == ""
    _files_written(tmp_path, reference)


def test_dev_stdout_on_a_pipe_is_written_into(tmp_path, reference) -> None:
    args = [*OUTS, "-q"]
    args[1] = "/dev/stdout"  # the pipe to the test: written into, not replaced
    proc = subprocess.run([*COMMAND, *SMALL, *args], cwd=tmp_path, env=env(), capture_output=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == reference["float.bin"]
    assert sorted(os.listdir(tmp_path)) == ["image.pgm", "int.img", "noise.img"]


# --------------------------------------------------------------------------- nonbragg, noisify


def test_nonbragg_and_noisify_refuse_shared_paths_and_write_one_set(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    nonbragg = ["nonbragg", "-stol", "water", "-detpixels", "32", "-seed", "1"]
    assert main([*nonbragg, "-floatfile", "x.bin", "-noisefile", "x.bin"]) == 2
    line = one_error(capsys.readouterr().err.replace("pybragg nonbragg: error:", "pybragg: error:"))
    assert "-floatfile" in line and "-noisefile" in line
    assert os.listdir(tmp_path) == []
    assert main([*nonbragg, "-floatfile", "x.bin"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    before = snapshot(tmp_path)
    assert main(["noisify", "-floatfile", "x.bin", "-seed", "1", "-intfile", "x.bin"]) == 2
    line = one_error(capsys.readouterr().err)
    assert "-intfile" in line and "-floatfile" in line
    assert snapshot(tmp_path) == before
    replace, _ = _failing_on_call(2)
    monkeypatch.setattr(os, "replace", replace)
    assert main(["noisify", "-floatfile", "x.bin", "-seed", "2"]) == 1
    assert "Input/output error" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
