"""rlpf: Reinforcement Learning from Physical Feedback for generative world models."""
__version__ = "0.1.0"

# Extension points, resolved on first use (PEP 562) so that ``import rlpf`` stays light: no MuJoCo,
# torch or TRL until one of them is asked for.
_LAZY = {
    "World": "rlpf.envs.worlds",
    "register_world": "rlpf.envs.worlds",
    "get_world": "rlpf.envs.worlds",
    "register_tracker": "rlpf.tracking",
    "DataSource": "rlpf.motion_data",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rlpf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
