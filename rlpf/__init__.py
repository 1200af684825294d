"""rlpf: Reinforcement Learning from Physical Feedback for generative world models.

The public Python API, resolved on first use (PEP 562) so that ``import rlpf`` stays light: no
MuJoCo, torch or TRL until one of them is asked for.

    rlpf.load_clips(path) -> [Clip]           the clip format (docs/clip-format.md)
    rlpf.score(clips, world, trackers=(), weights=None) -> ScoreReport    what `rlpf score` computes;
                                              .to_json() is exactly its report (docs/report-format.md)
    rlpf.World, rlpf.register_world(name, World(...))     a robot, usable by name everywhere
    rlpf.register_tracker(name, factory)      a tracker, usable as --tracker name
    rlpf.PhysicalFeedback(world, weights, tracker=...)    one named TRL reward function per term,
                                              scored in worker processes
    rlpf.MotionCodec, rlpf.WorldModelCodec    a generator's completions -> clips
    rlpf.MultiWorldModelCodec                 the same for a multi-world model (each clip in its prompt's world)
    rlpf.RLPFTrainer(model, codec, feedback, args, prompts)   TRL's GRPOTrainer on any causal LM
"""
__version__ = "0.1.0"

_API = {
    # clips and scoring
    "Clip": "rlpf.core.clips",
    "load_clips": "rlpf.core.clips",
    "save_clips": "rlpf.core.clips",
    "score": "rlpf.judge.scoring",
    "ScoreReport": "rlpf.judge.scoring",
    "ClipScore": "rlpf.judge.scoring",
    "ScoreConfig": "rlpf.judge.scoring",
    "RLPFError": "rlpf.core.errors",
    # extension points
    "World": "rlpf.envs.worlds",
    "register_world": "rlpf.envs.worlds",
    "get_world": "rlpf.envs.worlds",
    "register_tracker": "rlpf.judge.tracking",
    "DataSource": "rlpf.data.motion_data",
    # training any generator on physical feedback
    "PhysicalFeedback": "rlpf.finetune.feedback",
    "RLPFTrainer": "rlpf.finetune.grpo",
    "MotionCodec": "rlpf.worldmodel.codec",
    "WorldModelCodec": "rlpf.worldmodel.codec",
    "MultiWorldModelCodec": "rlpf.worldmodel.codec",
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rlpf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))


__all__ = sorted(_API)
