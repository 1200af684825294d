"""Where a command writes: checked before the work starts, written atomically, never over an input.

A command that spends minutes scoring or tracking must not find out at the end that its ``--out``
is a directory, read-only, one of its own inputs, or a device node. So every output is checked up
front (``check_output_file`` / ``check_output_dir``), and written through ``write_text`` /
``write_json``: into a temporary file beside the target, then renamed onto it, so a reader never
sees half a report. A symlink is written through to its target (the link stays a link). If the
final write still fails (the disk filled up meanwhile), ``write_or_rescue`` puts the work in a
temporary file and says where: finished work is never lost.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from typing import Iterable

from rlpf.core.errors import OutputError

EXIT_WRITE_FAILED = 3
"""Exit code of a command whose work finished but whose output could not be written (1: some inputs
failed, 2: usage / bad input)."""


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _input_files(inputs: Iterable[str]) -> list[str]:
    """The files named by ``inputs``, with every file inside the input directories."""
    out = []
    for p in inputs:
        if os.path.isdir(p):
            for root, _, files in os.walk(p):
                out += [os.path.join(root, f) for f in files]
        elif os.path.exists(p):
            out.append(p)
    return out


def _check_dir_writable(directory: str, what: str) -> None:
    """``directory`` exists (or can be created) and a file can be created in it."""
    directory = directory or "."
    existing = directory
    while not os.path.exists(existing):  # the nearest existing ancestor decides whether we may create it
        parent = os.path.dirname(existing.rstrip(os.sep)) or "."
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise OutputError(f"{what}: {existing} is not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rlpf-probe-", dir=directory)
    except OSError as e:
        raise OutputError(f"{what}: cannot write in {directory}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str, inputs: Iterable[str] = (), what: str = "--out") -> str:
    """Check that ``path`` may be written as a file; returns the path to write (a symlink's target).

    Refused with OutputError naming the path: one of ``inputs`` (files, or files inside input
    directories), an existing directory, a non-regular file (device, FIFO, socket), a place where no
    file can be created. Creates missing parent directories.
    """
    target = os.path.realpath(path)  # write through a symlink to its target, never replace the link
    for f in _input_files(inputs):
        if _same_file(target, f):
            raise OutputError(f"{what} {path}: is one of the inputs ({f}); choose another output path")
    if os.path.lexists(target):
        mode = os.stat(target).st_mode if os.path.exists(target) else 0
        if stat.S_ISDIR(mode):
            raise OutputError(f"{what} {path}: is a directory; give a file path, e.g. {os.path.join(path, 'report.json')}")
        if not stat.S_ISREG(mode):
            raise OutputError(f"{what} {path}: exists and is not a regular file (device, FIFO, socket or dangling link)")
        if not os.access(target, os.W_OK):
            raise OutputError(f"{what} {path}: exists and is not writable")
    _check_dir_writable(os.path.dirname(target), f"{what} {path}")
    return target


def check_output_dir(path: str, inputs: Iterable[str] = (), what: str = "--out") -> str:
    """Check that ``path`` may be used (created) as an output directory; returns its real path.

    Refused with OutputError: an existing non-directory (an input file among them), a place where
    files cannot be created. Files written inside are checked by the caller (``check_output_file``).
    """
    target = os.path.realpath(path)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise OutputError(f"{what} {path}: exists and is not a directory")
    for f in inputs:
        if os.path.isfile(f) and _same_file(target, f):
            raise OutputError(f"{what} {path}: is one of the inputs")
    _check_dir_writable(target, f"{what} {path}")
    return target


def write_text(path: str, text: str) -> str:
    """Write atomically through symlinks (tmp file in the target's directory, then rename)."""
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def write_dir(path: str, fill) -> str:
    """Write a whole directory atomically: ``fill(tmp)`` writes into ``PATH.tmp``, which then takes
    ``path``'s place (an old ``path`` is moved aside first and removed after), so a reader never finds
    half a saved model and a failed save leaves the previous one intact."""
    import shutil

    path = path.rstrip("/")
    tmp, old = path + ".tmp", path + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(path):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def write_json(path: str, value, indent: int = 2) -> str:
    return write_text(path, json.dumps(value, indent=indent))


def write_or_rescue(path: str, value, command: str) -> bool:
    """Write the JSON ``value`` to ``path``; if that fails, write it to a temporary file instead and say
    where on stderr. True when ``path`` was written."""
    try:
        write_json(path, value)
        return True
    except OSError as e:
        fd, rescue = tempfile.mkstemp(prefix=f"rlpf-{command}-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2)
        print(f"rlpf {command}: could not write {path} ({e.strerror or e}); the report is saved in {rescue}",
              file=sys.stderr)
        return False
