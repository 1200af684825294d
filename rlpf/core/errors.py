"""The project's own errors: one base class, so the CLI can tell a user's mistake from a bug.

Every error rlpf raises on purpose for bad input, a bad file or a bad config derives from
``RLPFError``; the CLI prints those as one line (exit 2). Anything else (a ValueError deep in torch
or TRL, a KeyError in our code) is a bug and keeps its traceback.
"""
from __future__ import annotations


class RLPFError(Exception):
    """Base of every error rlpf raises for input it refuses (files, configs, arguments)."""


class OutputError(RLPFError):
    """An output path that cannot or must not be written (an input, a directory, a device file...)."""


class CheckpointError(RLPFError, ValueError):
    """A saved model, tokenizer or training checkpoint that cannot be loaded; the message names the
    file and the problem."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class BackendError(RLPFError, ValueError):
    """A scoring backend that cannot be made (``rlpf.core.backend``): unknown name, ray not installed,
    a Ray cluster that cannot be reached."""
