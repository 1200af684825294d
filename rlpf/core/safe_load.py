"""Opening checkpoints, policies and normalization statistics without running code from them.

A pickle runs whatever its ``__reduce__`` names while it is read, so a shared run directory or
policy file could run any command on the machine of whoever opens it. rlpf therefore reads:

* torch files (training checkpoints, ``policy.pt``, the scored-ahead batch) only with
  ``torch.load(weights_only=True)``: tensors and plain containers of str / int / float / bool / None,
  nothing else (``load_tensors``);
* SB3 ``.zip`` models with SB3's own loader, but every ``data`` entry SB3 would cloudpickle-decode
  (marked ``":serialized:"``) is replaced through ``custom_objects`` by an object rebuilt here from
  the entry's readable JSON fields or from known defaults; an entry rlpf cannot rebuild is refused,
  never decoded (``load_sb3_model``). SB3 itself reads the ``.pth`` weights with ``weights_only=True``;
* VecNormalize statistics from a JSON file rlpf writes itself (``save_vecnormalize``): the running
  mean / variance / count of observations and returns, clip values, gamma, epsilon and the
  norm_obs / norm_reward switches, exact (JSON floats round-trip float64).

Older rlpf wrote VecNormalize statistics as SB3 pickles (``vecnormalize.pkl``). rlpf does not open
those: loading names the file and the way out (``LegacyPickleError``): retrain, or, for a file the user
trusts, convert it once, deliberately, with

    python -m rlpf.core.safe_load --trust-and-convert RUN_OR_FILE [...]

which unpickles the given ``*.pkl`` files (that is the point of asking for trust) and writes the
``.json`` next to each. Nothing else in rlpf unpickles a file.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import zipfile

import numpy as np

from rlpf.core.errors import RLPFError

VECNORMALIZE_FORMAT = "rlpf.vecnormalize/1"


class UnsafeFileError(RLPFError, ValueError):
    """A file rlpf refuses to read because reading it would run code (a pickle of Python objects)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


class LegacyPickleError(UnsafeFileError):
    """Statistics an older rlpf stored as a pickle: refused, with how to convert or retrain."""


class StatsFileError(RLPFError, ValueError):
    """A VecNormalize statistics file that is missing, malformed or does not fit."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


# ---------------------------------------------------------------------------------------------------
# torch files


def load_tensors(path: str, what: str = "file"):
    """``torch.load(path, weights_only=True)`` on the CPU. A file holding other Python objects raises
    UnsafeFileError naming the file and the object; other failures (a damaged file) propagate."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" not in text:
            raise
        m = re.search(r"GLOBAL ([\w.]+)", text)
        if m is None:  # not a pickled object, just bytes that are no pickle (a damaged file)
            detail = text.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0].strip()
            raise pickle.UnpicklingError(f"not a torch file of tensors ({detail or 'unreadable'})") from None
        raise UnsafeFileError(path, f"refused: this {what} holds Python objects beyond tensors and plain data "
                                    f"(it names {m.group(1)}); reading it would run code, and rlpf never "
                                    "unpickles files") from None


# ---------------------------------------------------------------------------------------------------
# SB3 models

def _box(entry: dict, key: str, path: str, fallback=None):
    """A gymnasium Box from the readable fields SB3 writes next to the pickle; ``fallback`` (the env's
    space) when the bounds were truncated in the text but shape and dtype match."""
    from gymnasium import spaces

    if entry.get(":type:") != "<class 'gymnasium.spaces.box.Box'>":
        raise UnsafeFileError(path, f"entry {key!r} is a pickled {entry.get(':type:', 'object')}; rlpf rebuilds "
                                    "only gymnasium Box spaces and never unpickles files")
    try:
        shape = tuple(int(n) for n in entry["_shape"])
        dtype = np.dtype(str(entry["dtype"]))
    except (KeyError, TypeError, ValueError) as e:
        raise UnsafeFileError(path, f"entry {key!r}: no readable shape / dtype ({type(e).__name__}: {e})") from None

    def bounds(name):
        text = entry.get(name)
        if not isinstance(text, str):
            return None
        try:
            values = np.array([float(v) for v in text.replace("[", " ").replace("]", " ").split()], np.float64)
        except ValueError:  # numpy shortened a long array with "..."
            return None
        n = int(np.prod(shape))
        if values.size == 1:
            return np.full(shape, values[0])
        return values.reshape(shape) if values.size == n else None

    low, high = bounds("low"), bounds("high")
    if low is None or high is None:
        if fallback is not None and tuple(fallback.shape) == shape and fallback.dtype == dtype:
            return fallback
        raise UnsafeFileError(path, f"entry {key!r}: its bounds are not readable without unpickling")
    return spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=shape, dtype=dtype)


def _schedule(entry: dict, key: str, path: str):
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    text = str(entry.get("value_schedule", ""))
    num = r"([-+0-9.eEinfa]+)"
    m = re.fullmatch(rf"ConstantSchedule\(val={num}\)", text)
    if m:
        return FloatSchedule(ConstantSchedule(float(m.group(1))))
    m = re.fullmatch(rf"LinearSchedule\(start={num}, end={num}, end_fraction={num}\)", text)
    if m:
        return FloatSchedule(LinearSchedule(*(float(g) for g in m.groups())))
    raise UnsafeFileError(path, f"entry {key!r} is a pickled schedule rlpf cannot rebuild ({text or 'no readable value'}); "
                                f"pass it as custom_objects[{key!r}]")


def _sb3_class(entry: dict, candidates, key: str, path: str, default="refuse"):
    """The installed SB3 class a pickled class entry names (matched by module and by the qualified
    names of its methods in the readable fields) among ``candidates``; nothing is imported from the file."""
    module = entry.get("__module__")
    text = " ".join(str(v) for v in entry.values())
    for cls in candidates:
        if cls.__module__ == module and f"<function {cls.__name__}." in text:
            return cls
    if default != "refuse":
        return default
    names = ", ".join(sorted({f"{c.__module__}.{c.__name__}" for c in candidates}))
    raise UnsafeFileError(path, f"entry {key!r} names a class rlpf cannot identify without unpickling "
                                f"(module {module!r}); known: {names}")


def _replacement(algo, key: str, entry: dict, path: str, env):
    """What to put in place of one ":serialized:" entry of an SB3 zip, or raise UnsafeFileError."""
    import inspect

    if key in ("observation_space", "action_space"):
        return _box(entry, key, path, getattr(env, key, None))
    if key == "policy_class":
        return _sb3_class(entry, list(dict.fromkeys(algo.policy_aliases.values())), key, path)
    if key in ("rollout_buffer_class", "replay_buffer_class"):
        from stable_baselines3.common import buffers

        known = [getattr(buffers, n) for n in ("RolloutBuffer", "DictRolloutBuffer", "ReplayBuffer", "DictReplayBuffer")]
        return _sb3_class(entry, known, key, path, default=None)  # None: SB3 picks the default for the space
    if key in ("lr_schedule", "clip_range", "clip_range_vf", "learning_rate", "exploration_schedule"):
        return _schedule(entry, key, path)
    if key in ("_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer", "ep_success_buffer",
               "action_noise"):
        # rollout state and exploration noise: SB3 rebuilds them (env reset, new buffers) when they are None
        return None
    if key == "train_freq":
        # a TrainFreq tuple whose value is only inside the pickle: the algorithm's default
        default = inspect.signature(algo.__init__).parameters.get("train_freq")
        if default is not None and default.default is not inspect.Parameter.empty:
            return default.default
    raise UnsafeFileError(path, f"entry {key!r} is a pickled Python object ({entry.get(':type:', '?')}) that rlpf "
                                f"cannot rebuild without unpickling; pass it as custom_objects[{key!r}] or retrain")


def load_sb3_model(algo, path: str, env=None, custom_objects: dict | None = None, device: str = "cpu", **kwargs):
    """``algo.load(path, ...)`` with no cloudpickle payload decoded: every ``":serialized:"`` entry of the
    zip's ``data`` is replaced (``custom_objects`` first, then a rebuild from its readable fields).

    The file is read once into memory, so the entries checked are the entries SB3 loads.
    Raises UnsafeFileError for an entry rlpf cannot rebuild; SB3's own errors (a damaged zip,
    mismatched spaces) propagate.
    """
    with open(path, "rb") as f:
        raw = f.read()
    custom = dict(custom_objects or {})
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            data = json.loads(archive.read("data").decode()) if "data" in archive.namelist() else {}
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not an SB3 model zip ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ValueError("not an SB3 model zip (its data entry is not a JSON object)")
    for key, entry in data.items():
        if key in custom or not (isinstance(entry, dict) and ":serialized:" in entry):
            continue
        custom[key] = _replacement(algo, key, entry, path, env)
    if "env" in data and "env" not in custom:
        custom["env"] = None  # a stored env (an id gym.make would import) is never used
    return algo.load(io.BytesIO(raw), env=env, device=device, custom_objects=custom, **kwargs)


# ---------------------------------------------------------------------------------------------------
# VecNormalize statistics

def _rms(rms) -> dict:
    return {"mean": np.asarray(rms.mean, np.float64).tolist(), "var": np.asarray(rms.var, np.float64).tolist(),
            "count": float(rms.count), "shape": list(np.shape(rms.mean))}


def vecnormalize_stats(vn) -> dict:
    """The JSON-ready statistics and settings of a VecNormalize (Box observations)."""
    if isinstance(vn.obs_rms, dict):
        raise StatsFileError("<VecNormalize>", "dict observation spaces are not supported (rlpf's envs are Box)")
    return {"format": VECNORMALIZE_FORMAT, "norm_obs": bool(vn.norm_obs), "norm_reward": bool(vn.norm_reward),
            "clip_obs": float(vn.clip_obs), "clip_reward": float(vn.clip_reward), "gamma": float(vn.gamma),
            "epsilon": float(vn.epsilon), "training": bool(vn.training),
            "obs_rms": _rms(vn.obs_rms), "ret_rms": _rms(vn.ret_rms)}


def save_vecnormalize(vn, path: str) -> str:
    """Write a VecNormalize's statistics as JSON, atomically. Returns ``path``."""
    stats = vecnormalize_stats(vn)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, path)
    return path


def legacy_pickle_error(pkl_path: str, retrain: str) -> LegacyPickleError:
    return LegacyPickleError(
        pkl_path, "VecNormalize statistics pickled by an older rlpf; rlpf no longer opens pickles (reading one runs "
                  f"any code it holds). Retrain ({retrain}), or, only if you trust where this file came from, "
                  f"convert it once: python -m rlpf.core.safe_load --trust-and-convert {pkl_path}")


def stats_path(json_path: str, retrain: str) -> str:
    """``json_path`` when it exists; LegacyPickleError when only the old ``.pkl`` twin does; else
    StatsFileError (missing)."""
    if os.path.isfile(json_path):
        return json_path
    pkl = os.path.splitext(json_path)[0] + ".pkl"
    if os.path.isfile(pkl):
        raise legacy_pickle_error(pkl, retrain)
    raise StatsFileError(json_path, "no such VecNormalize statistics file")


def _read_rms(stats: dict, name: str, path: str):
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    d = stats.get(name)
    if not isinstance(d, dict):
        raise StatsFileError(path, f"{name}: missing")
    try:
        shape = tuple(int(n) for n in d["shape"])
        mean = np.asarray(d["mean"], np.float64).reshape(shape)
        var = np.asarray(d["var"], np.float64).reshape(shape)
        count = float(d["count"])
    except (KeyError, TypeError, ValueError) as e:
        raise StatsFileError(path, f"{name}: not mean / var / count / shape ({type(e).__name__}: {e})") from None
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
        raise StatsFileError(path, f"{name}: mean and var must be finite, var >= 0")
    if not (math.isfinite(count) and count > 0):
        raise StatsFileError(path, f"{name}: count must be a positive number, got {count}")
    rms = RunningMeanStd(shape=shape)
    rms.mean, rms.var, rms.count = mean, var, count
    return rms


def read_vecnormalize(path: str) -> dict:
    """The statistics ``save_vecnormalize`` wrote, validated: ``obs_rms`` / ``ret_rms`` as SB3
    RunningMeanStd, the rest as Python scalars. Raises StatsFileError (or LegacyPickleError for a pickle)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head[:1] == b"\x80":  # pickle protocol >= 2 opcode
                raise legacy_pickle_error(path, "run the command that trained it into a new --out")
            stats = json.loads(f.read().decode())
    except LegacyPickleError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StatsFileError(path, f"unreadable VecNormalize statistics ({type(e).__name__}: {e})") from None
    if not isinstance(stats, dict) or stats.get("format") != VECNORMALIZE_FORMAT:
        raise StatsFileError(path, f"unreadable VecNormalize statistics (not a {VECNORMALIZE_FORMAT} JSON file)")
    out = {"obs_rms": _read_rms(stats, "obs_rms", path), "ret_rms": _read_rms(stats, "ret_rms", path)}
    for key, kind in (("norm_obs", bool), ("norm_reward", bool), ("training", bool), ("clip_obs", float),
                      ("clip_reward", float), ("gamma", float), ("epsilon", float)):
        value = stats.get(key)
        ok = isinstance(value, bool) if kind is bool else (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            raise StatsFileError(path, f"{key}: expected {kind.__name__}, got {value!r}")
        out[key] = kind(value)
    for key in ("clip_obs", "clip_reward", "epsilon"):
        if not out[key] > 0:
            raise StatsFileError(path, f"{key} must be > 0, got {out[key]}")
    if not 0 <= out["gamma"] <= 1:
        raise StatsFileError(path, f"gamma must be in [0, 1], got {out['gamma']}")
    return out


def vecnormalize_from_stats(stats: dict, venv, training: bool | None = None):
    """A VecNormalize around ``venv`` carrying ``stats`` (from ``read_vecnormalize``), as
    ``VecNormalize.load`` would return it, built without unpickling."""
    from stable_baselines3.common.vec_env import VecNormalize

    vn = VecNormalize(venv, training=stats["training"] if training is None else training,
                      norm_obs=stats["norm_obs"], norm_reward=stats["norm_reward"], clip_obs=stats["clip_obs"],
                      clip_reward=stats["clip_reward"], gamma=stats["gamma"], epsilon=stats["epsilon"])
    if stats["norm_obs"] and vn.obs_rms.mean.shape != stats["obs_rms"].mean.shape:
        raise ValueError(f"statistics for observations {stats['obs_rms'].mean.shape}, the env gives "
                         f"{vn.obs_rms.mean.shape}")
    vn.obs_rms, vn.ret_rms = stats["obs_rms"], stats["ret_rms"]
    return vn


class ObsNormalizer:
    """VecNormalize's observation normalization (``normalize_obs``) without an env: for acting only."""

    def __init__(self, stats: dict):
        self.obs_rms, self.norm_obs = stats["obs_rms"], stats["norm_obs"]
        self.epsilon, self.clip_obs = stats["epsilon"], stats["clip_obs"]
        self.training = False

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return np.array(obs, copy=True)
        return np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon),
                       -self.clip_obs, self.clip_obs).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# the deliberate conversion of trusted legacy pickles

def convert_trusted_pickle(pkl_path: str) -> str:
    """Unpickle a VecNormalize the caller trusts and write its statistics as JSON next to it.

    This runs any code the file holds: only ever call it on an explicit request naming the file
    (``python -m rlpf.core.safe_load --trust-and-convert``); no loading path in rlpf calls it."""
    import pickle

    with open(pkl_path, "rb") as f:
        vn = pickle.load(f)  # noqa: S301 - the user asked for exactly this, for this file
    if not hasattr(vn, "obs_rms"):
        raise StatsFileError(pkl_path, f"not a pickled VecNormalize (a {type(vn).__name__})")
    out = os.path.splitext(pkl_path)[0] + ".json"
    return save_vecnormalize(vn, out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m rlpf.core.safe_load", description=(
        "Convert VecNormalize pickles written by an older rlpf into the JSON statistics rlpf reads now. "
        "UNPICKLING RUNS ANY CODE IN THE FILE: convert only files you trust."))
    p.add_argument("--trust-and-convert", nargs="+", required=True, metavar="PATH",
                   help="*vecnormalize*.pkl files, or run / policy directories to search for them")
    args = p.parse_args(argv)
    files = []
    for path in args.trust_and_convert:
        if os.path.isdir(path):
            for dirpath, _, names in os.walk(path):
                files += [os.path.join(dirpath, n) for n in sorted(names) if n.endswith(".pkl") and "vecnormalize" in n]
        elif os.path.isfile(path):
            files.append(path)
        else:
            print(f"{path}: no such file or directory", file=sys.stderr)
            return 2
    if not files:
        print("no *vecnormalize*.pkl files found", file=sys.stderr)
        return 2
    for f in files:
        print(f"{f} -> {convert_trusted_pickle(f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
