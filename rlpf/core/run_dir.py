"""A run directory: its config (written once, checked on resume) and its small JSON records."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import socket

from rlpf.core.config import ConfigError, config_dict, decode_config, read_yaml, save_config
from rlpf.core.errors import RLPFError


def config_changes(cfg, run_dir: str, introduced: dict | None = None) -> dict:
    """``{field: (value in RUN/config.yaml, value in cfg)}`` for every top-level field that differs;
    {} when RUN has no config yet or the same one.

    RUN's config is read with the config's own typed loader (``rlpf.core.config.decode_config``), so both
    sides are compared as the same types (an old run's ``10`` is the weight ``10.0``, a tuple is its
    list); one that no longer reads as a config of this kind is refused with ConfigError saying why.
    ``introduced``: ``{"section.field": value}`` for fields added to the config after runs were
    written, with the value that describes what those runs did; a RUN config without the field is
    read as having that value (not the new default, which may do something else).
    """
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(path):
        return {}
    existing = read_yaml(path)
    for dotted, value in (introduced or {}).items():
        *sections, name = dotted.split(".")
        node = existing
        for key in sections:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(name, value)
    try:
        old = config_dict(decode_config(type(cfg), existing, source=path))
    except ConfigError as e:
        raise ConfigError(f"{run_dir} holds a run whose config does not read as a {type(cfg).__name__} ({e}); "
                          "choose a new --out") from None
    # a field the old run did not have stays missing rather than reading as today's default (which
    # may do something else): it differs unless ``introduced`` says what those runs did
    old = _present(old, existing)
    wanted = config_dict(cfg)
    return {k: (old.get(k), wanted.get(k)) for k in sorted(set(old) | set(wanted)) if old.get(k) != wanted.get(k)}


def _present(decoded: dict, raw: dict) -> dict:
    """``decoded`` restricted to the keys ``raw`` has, at every depth."""
    return {k: _present(v, raw[k]) if isinstance(v, dict) and isinstance(raw[k], dict) else v
            for k, v in decoded.items() if k in raw}


def claim_run_dir(cfg, run_dir: str, may_change: tuple = (), check=None, introduced: dict | None = None,
                  write: bool = True) -> dict:
    """Write the config into RUN, or check that RUN was started with the same config (resume).

    ``write=False`` only checks: call it before the preparations that may still fail, and with
    ``write=True`` once the run really starts, so a failed start leaves no config that would refuse
    the corrected command. The config is written atomically (a killed run never leaves half a file).

    Fields named in ``may_change`` may differ from RUN's config (the tracker's ``total_timesteps``:
    a finished run trained further); ``check(changes)`` may refuse such a change by raising, before
    anything is written. Any other difference is refused with ConfigError naming the fields.
    ``introduced``: see ``config_changes``.
    Returns the allowed changes, ``{field: (old, new)}``; RUN/config.yaml then holds the new config.
    """
    changes = config_changes(cfg, run_dir, introduced)
    refused = sorted(k for k in changes if k not in may_change)
    if refused:
        allowed = f"; only {', '.join(may_change)} may change" if may_change else ""
        raise ConfigError(f"{run_dir} holds a run with a different config (fields {refused} differ{allowed}); "
                          "resume with the same config or choose a new --out")
    if changes and check is not None:
        check(changes)
    if write:
        path = os.path.join(run_dir, "config.yaml")
        save_config(cfg, path + ".tmp")
        os.replace(path + ".tmp", path)
    return changes


def read_json(path: str) -> dict:
    """The JSON record at ``path``, or {} when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def write_json(path: str, value: dict) -> None:
    """Write atomically: a reader never sees half a record."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


LOCK_FILE = ".lock"
_held: dict[str, list] = {}  # real path -> [fd, depth]: this process's locks (re-entrant)


class RunLockedError(RLPFError):
    """The run directory is in use by another live process."""


@contextlib.contextmanager
def run_lock(run_dir: str):
    """Hold RUN/.lock for the duration: a second process given the same run directory is refused
    (RunLockedError naming the owner's pid) instead of both writing into it.

    The lock is ``flock`` on the file, which the kernel releases when its owner exits in any way
    (SIGKILL, a crash), so a lock left by a dead run is never in the way: there is no stale lock to
    detect. The file holds the owner's pid and host for the message. Re-entrant within a process.
    """
    os.makedirs(run_dir, exist_ok=True)
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    path = os.path.join(run_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLockedError(f"{run_dir} is in use by another rlpf run (pid/host: {owner}); wait for it to "
                             "finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        del _held[key]
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing releases the flock


def locks_run_dir(func):
    """Decorator: hold ``run_lock`` on the function's ``run_dir`` argument (the second positional one,
    or ``run_dir=``) while it runs."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        run_dir = kwargs["run_dir"] if "run_dir" in kwargs else args[1]
        with run_lock(run_dir):
            return func(*args, **kwargs)
    return wrapper
