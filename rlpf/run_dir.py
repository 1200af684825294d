"""A run directory: its config (written once, checked on resume) and its small JSON records."""
from __future__ import annotations

import dataclasses
import json
import os

from rlpf.config import ConfigError, save_config


def claim_run_dir(cfg, run_dir: str) -> None:
    """Write the config into RUN, or check that RUN was started with the same config (resume)."""
    import yaml

    path = os.path.join(run_dir, "config.yaml")
    wanted = dataclasses.asdict(cfg)
    if os.path.exists(path):
        with open(path) as f:
            existing = yaml.safe_load(f) or {}
        if existing != yaml.safe_load(yaml.safe_dump(wanted, sort_keys=False)):
            diff = sorted(k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k))
            raise ConfigError(f"{run_dir} holds a run with a different config (fields {diff} differ); "
                              "resume with the same config or choose a new --out")
    save_config(cfg, path)


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
