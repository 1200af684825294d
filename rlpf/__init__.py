"""rlpf: Reinforcement Learning from Physical Feedback for generative world models.

The public Python API (imported on first use, so ``import rlpf`` stays light: no torch, no TRL):

    rlpf.load_clips(path) -> [Clip]          the clip format (docs/clip-format.md)
    rlpf.Clip
    rlpf.score(clips, world, trackers=(), weights=None) -> ScoreReport   what `rlpf score` computes;
                                             .to_json() is exactly its report (docs/report-format.md)
"""
__version__ = "0.1.0"

_API = {
    "Clip": "rlpf.clips",
    "load_clips": "rlpf.clips",
    "save_clips": "rlpf.clips",
    "score": "rlpf.scoring",
    "ScoreReport": "rlpf.scoring",
    "ClipScore": "rlpf.scoring",
    "ScoreConfig": "rlpf.scoring",
    "RLPFError": "rlpf.errors",
}


def __getattr__(name: str):
    """Lazy public names (PEP 562): the module behind a name is imported when it is first used."""
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rlpf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))


__all__ = sorted(_API)
