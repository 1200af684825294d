"""The ``rlpf`` command line."""
from __future__ import annotations

import argparse
import os
import sys

EXAMPLES_DIR = os.path.join(os.path.dirname(__file__), "examples")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere, e.g. `rlpf score a.npz --world ant weights.x=1`
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) != len(extra) or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides) or ' '.join(extra)}")
    if overrides:
        args.overrides = args.overrides + overrides
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)


def run_command(func, args) -> int:
    """Run one command: rlpf's own errors (bad input, files, configs: ``RLPFError``) become one line
    on stderr and exit 2; Ctrl-C exits 130; anything else is a bug and keeps its traceback."""
    from rlpf.errors import RLPFError

    name = func.__name__.removeprefix("cmd_").replace("_", "-")
    try:
        return func(args)
    except RLPFError as e:
        print(f"rlpf {name}: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        # a path the user gave that is not there / not usable; the message names it
        print(f"rlpf {name}: {e.strerror or e}: {e.filename}" if e.filename else f"rlpf {name}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"rlpf {name}: {e or 'interrupted'}", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from rlpf import __version__

    p = argparse.ArgumentParser(
        prog="rlpf",
        description="Reinforcement Learning from Physical Feedback: score, simulate, track and align "
                    "generative world models with a MuJoCo physics simulator (rlpf train runs the whole loop).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"rlpf {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    from rlpf.config import describe
    from rlpf.scoring import ScoreConfig

    s = sub.add_parser(
        "score", help="score clip files for physical plausibility (table on stdout, JSON report)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score clips (.npz, see docs/clip-format.md) with the physics reward plugins.\n\n"
                    "Each clip gets every term (penetration, floating, skating, residual root force, joint\n"
                    "limits, torques, unexplained object motion), a score (weighted total: 0 = nothing\n"
                    "found, more negative = less plausible) and plausible = no term above its threshold.\n"
                    "Exit 0 when every input scored, 1 when any failed (the report still lists the rest).",
        epilog="config fields (YAML via --config, or key=value; dict entries as weights.NAME=W):\n"
               + describe(ScoreConfig)
               + "\n\nexamples:\n  rlpf score --examples\n  rlpf score clips/ --world ant --out report.json\n"
                 "  rlpf score a.npz weights.skate_mps=-20 weights.mypkg.rewards:smooth=-1\n"
                 "  rlpf score clips/ --tracker pd --out report.json\n"
                 "  rlpf score clips/ --tracker pd --tracker runs/tracker-ant   # compare two trackers",
    )
    s.add_argument("paths", nargs="*", metavar="PATH", help="clip files or directories (searched recursively for .npz)")
    s.add_argument("--world", help="built-in world (ant, humanoid, pusher) or MJCF path; default: each file's own")
    s.add_argument("--out", help="write the JSON report here")
    s.add_argument("--config", help="YAML file with ScoreConfig fields")
    s.add_argument("--examples", action="store_true", help="score the example clips bundled with rlpf")
    s.add_argument("--tracker", action="append", default=[], metavar="pd|learned|RUN_DIR",
                   help="also replay every clip with a tracking controller in MuJoCo (parallel processes): adds "
                        "tracking_success and tracking_error_m (object_divergence_m with objects) to the terms, "
                        "unweighted; a failed track makes the clip implausible. Repeat to compare trackers: the "
                        "first fills the terms, all appear in the summary with their agreement")
    s.add_argument("--quiet", action="store_true", help="no table, no progress bar")
    s.set_defaults(overrides=[])
    s.set_defaults(func=cmd_score)

    sim = sub.add_parser(
        "simulate", help="record physically valid clips from a world with a scripted controller",
        description="Run a scripted controller in MuJoCo and write clips in the clip format; "
                    "optionally also a corrupted copy of each (to see what the scorer flags).",
    )
    sim.add_argument("--world", required=True, help="a registered world (ant, humanoid, pusher, or one of "
                     "rlpf.register_world / an 'rlpf.worlds' entry point) or an MJCF path")
    sim.add_argument("--n", type=int, default=4, help="number of clips (default 4)")
    sim.add_argument("--frames", type=int, default=100, help="frames per clip (default 100)")
    sim.add_argument("--controller", default="auto", choices=["auto", "random", "gait", "push"],
                     help="auto: the world's own scripted controller (World.controller: gait for ant, push "
                          "for pusher), smooth random actions otherwise")
    sim.add_argument("--corrupt", action="append", default=[], metavar="KIND",
                     help="also write a corrupted copy: float, sink, levitate, skate, teleport, jitter, "
                          "bend_joint, move_object (repeatable)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", required=True, help="output directory")
    sim.set_defaults(func=cmd_simulate)

    data = sub.add_parser(
        "data", help="simulate a prompt-labelled, prompt-balanced motion dataset (world-model pretraining data)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate clips in MuJoCo with randomized scripted controllers (ant: steerable CPG gaits;\n"
                    "pusher: directed pushes and reaches), label each by what the motion does (measured, see\n"
                    "rlpf.motion_data), and keep them by rejection sampling until every prompt has its share.\n"
                    "The same --seed gives the same clips whatever --workers is.\n\n"
                    "prompts:\n"
                    "  ant:    stand still, walk forward slowly, walk forward, walk forward fast, walk backward,\n"
                    "          walk left, walk right, turn left, turn right\n"
                    "  pusher: push the object away / closer / left / right, reach without pushing\n\n"
                    "Output: one batch .npz per prompt (WORLD_PROMPT.npz, clips with --artifacts in\n"
                    "WORLD_PROMPT_artifacts.npz) and manifest.json with every clip's source.",
        epilog="examples:\n  rlpf data --world ant --n 900 --out data/ant\n"
               "  rlpf data --world pusher --n 500 --frames 64 --seed 1 --out data/pusher\n"
               "  rlpf data --world ant --n 900 --artifacts 0.3 --out data/ant-web   # 30% with artifacts\n"
               "  rlpf score data/ant --quiet --out report.json",
    )
    data.add_argument("--world", required=True, help="a world with a data source: ant, pusher, or a registered one")
    data.add_argument("--n", type=int, required=True, help="number of clips (split evenly over the prompts)")
    data.add_argument("--out", required=True, help="output directory")
    data.add_argument("--frames", type=int, default=64, help="frames per clip, a multiple of 4 (default 64 = 3.2 s at 20 fps)")
    data.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    data.add_argument("--workers", type=int, default=None, help="simulation processes (default min(2, CPUs))")
    data.add_argument("--artifacts", type=float, default=0.0, metavar="FRACTION",
                      help="give this fraction of the clips one web-video-like artifact (ant: float, sink, "
                           "skate, jitter; pusher: move_object, jitter), prompt kept (default 0)")
    data.add_argument("--quiet", action="store_true", help="no progress bar")
    data.set_defaults(func=cmd_data)

    pre = sub.add_parser(
        "pretrain", help="pretrain a world model: simulated data -> motion tokenizer -> causal LM -> evaluator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pretrain a text-to-motion world model (FSQ motion tokenizer + tiny Llama over prompt words\n"
                    "and motion codes) on simulated, prompt-labelled clips. By default a fraction of the\n"
                    "training clips carries web-video-like physical artifacts, so the base model makes\n"
                    "physical errors for RLPF to remove (artifacts=0 turns that off).\n\n"
                    "Running the same command again resumes: finished stages are skipped and an interrupted\n"
                    "stage continues from its last checkpoint. Ctrl-C saves a checkpoint first.",
    )
    _lazy_epilog(pre, lambda: "config fields (YAML via --config, or key=value; nested as tokenizer.hidden=64):\n"
                 + describe(_pretrain_config())
                 + "\n\nexamples:\n  rlpf pretrain --config experiments/configs/ant.yaml --out runs/ant\n"
                   "  rlpf pretrain --config experiments/configs/ant.yaml lm_steps=500 artifacts=0 --out runs/ant-clean")
    pre.add_argument("--config", help="YAML file with PretrainConfig fields (default: the built-in defaults)")
    pre.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    pre.set_defaults(overrides=[], func=cmd_pretrain)

    rt = sub.add_parser(
        "train", help="RLPF: fine-tune a world model on physical feedback (TRL GRPO) and report before/after",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reinforcement Learning from Physical Feedback, end to end, every step cached:\n"
                    "  data -> pretraining of the base model (base_run) -> trackers (the learned one trained\n"
                    "  in tracker_run) -> fine-tuning by `method` -> evaluation of base and fine-tuned.\n\n"
                    "method rlpf: TRL's GRPOTrainer samples a group of clips per prompt, a tracker replays each\n"
                    "in MuJoCo, reward plugins score them (default 10 x tracking_success + 2 x alignment), and\n"
                    "group-relative PPO-clip with KL to the frozen base model updates the generator. Every term\n"
                    "is logged to TensorBoard (RUN/tb/rlpf). method sft_filter: fine-tune on the base model's own\n"
                    "samples that track. method base: only the base model's report.\n\n"
                    "Leaves in RUN: report.md, report.json ({before, after, change, training}), samples/*.npz,\n"
                    "videos/*.mp4 (generated | tracked), model/ (the fine-tuned world model), tb/, config.yaml.\n"
                    "Running the same command again resumes from the last checkpoint; Ctrl-C saves one first.",
    )
    _lazy_epilog(rt, lambda: "config fields (YAML via --config, or key=value; nested as grpo.beta=0.05):\n"
                 + describe(_rlpf_config())
                 + "\n\nexamples:\n  rlpf train --config experiments/configs/rlpf_ant.yaml --out runs/rlpf-ant\n"
                   "  rlpf train --config experiments/configs/rlpf_ant.yaml grpo.steps=50 --out runs/rlpf-short\n"
                   "  rlpf train --config experiments/configs/sft_filter_ant.yaml --out runs/sft-ant")
    rt.add_argument("--config", help="YAML file with RLPFConfig fields (default: the built-in defaults)")
    rt.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    rt.add_argument("--quiet", action="store_true", help="no progress bars")
    rt.set_defaults(overrides=[], func=cmd_train)

    gen = sub.add_parser(
        "generate", help="sample clips from a pretrained world model (clip format, ready for `rlpf score`)",
        description="Generate clips for a prompt; --first-frames continues a given clip's start "
                    "(the image-to-video analogue). Output: one batch .npz per prompt in --out.",
    )
    gen.add_argument("--checkpoint", required=True, help="pretraining run directory (or its model/ directory)")
    gen.add_argument("--prompt", action="append", required=True,
                     help="text prompt, e.g. 'walk forward' (repeatable); unknown words list the vocabulary")
    gen.add_argument("--n", type=int, default=8, help="clips per prompt (default 8)")
    gen.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--first-frames", metavar="CLIP", help="clip file whose first --context frames start every sample")
    gen.add_argument("--context", type=int, default=8, help="frames of --first-frames to keep (default 8)")
    gen.add_argument("--out", required=True, help="output directory")
    gen.set_defaults(func=cmd_generate)

    ev = sub.add_parser(
        "evaluate", help="evaluate a world model: command accuracy, physics, FID, diversity, R-precision",
        description="Generate --n clips per prompt and measure command accuracy (from the motion itself),\n"
                    "the physics scorer's plausible rate and term means, and FID / diversity / R-precision\n"
                    "in the learned motion-text feature space against the run's clean held-out clips.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--checkpoint", required=True, help="pretraining run directory")
    ev.add_argument("--n", type=int, default=32, help="clips per prompt (default 32)")
    ev.add_argument("--temperature", type=float, default=1.0)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", help="write the JSON report here (default RUN/eval.json)")
    ev.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser(
        "track", help="track clips with a controller in MuJoCo: success, body error, side-by-side videos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay clips (.npz, see docs/clip-format.md) with a tracking controller in MuJoCo and report whether\n"
                    "each could be performed: success (no fall, no divergence, body error within the world's\n"
                    "threshold at every frame), mean / max body-position error. With --video, also render\n"
                    "reference | tracked side-by-side mp4s (headless: MUJOCO_GL=egl, the default here, or osmesa).\n"
                    "Exit 0 when every input was tracked, 1 when any failed to load or render (the report\n"
                    "still lists the rest), 2 on usage errors.",
        epilog="examples:\n  rlpf track clips/ --world ant --tracker pd --out track.json\n"
               "  rlpf track gen/walk_forward.npz --tracker runs/tracker-ant --video videos/ --max-videos 4",
    )
    tr.add_argument("paths", nargs="+", metavar="CLIPS", help="clip files or directories (searched recursively for .npz)")
    tr.add_argument("--world", help="built-in world (ant, humanoid, pusher) or MJCF path; default: each file's own")
    tr.add_argument("--tracker", default="pd", help="pd, learned, or a trained tracker's run directory (default pd)")
    tr.add_argument("--video", metavar="DIR", help="render side-by-side mp4s (named after each clip's source) here")
    tr.add_argument("--max-videos", type=int, default=8, metavar="N", help="render at most N videos, the first N clips (default 8)")
    tr.add_argument("--size", type=int, default=256, metavar="PX", help="video panel size in pixels (default 256)")
    tr.add_argument("--out", help="write the JSON report here")
    tr.add_argument("--workers", type=int, default=None, help="tracking processes (default min(2, CPUs))")
    tr.add_argument("--quiet", action="store_true", help="no table, no progress bars")
    tr.set_defaults(func=cmd_track)

    tt = sub.add_parser(
        "train-tracker", help="train the learned motion tracker (SB3 PPO on rlpf/MotionTracking-v0)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a tracking policy (DeepMimic-style reward, residual PD targets) with PPO over a\n"
                    "library of valid clips: the world's simulated clips (cached under runs/data, shared with\n"
                    "`rlpf pretrain`) or data=DIR. Output: RUN/tracker.zip + RUN/vecnormalize.json (use with\n"
                    "rlpf.policies.learned_tracker.LearnedTracker.load(RUN)), TensorBoard logs in RUN/tb,\n"
                    "checkpoints in RUN/checkpoints, and RUN/tracker_summary.json with the held-out evaluation\n"
                    "(success on valid clips and on levitated copies).\n\n"
                    "Running the same command again resumes from the newest checkpoint (Ctrl-C saves one); on a\n"
                    "finished run it only prints the stored summary. A larger total_timesteps=N trains a finished\n"
                    "run further from its last checkpoint; any other changed field is refused.",
    )
    _lazy_epilog(tt, lambda: "config fields (YAML via --config, or key=value; nested as reward.pose_weight=0.6):\n"
                 + describe(_tracker_config())
                 + "\n\nexamples:\n  rlpf train-tracker --config experiments/configs/tracker_ant.yaml --out runs/tracker-ant\n"
                   "  rlpf train-tracker --config experiments/configs/tracker_ant.yaml total_timesteps=50000 "
                   "vec_env=dummy --out runs/tracker-quick")
    tt.add_argument("--config", help="YAML file with TrackerTrainConfig fields (default: the built-in defaults)")
    tt.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    tt.add_argument("--quiet", action="store_true", help="no progress bars")
    tt.set_defaults(overrides=[], func=cmd_train_tracker)

    ec = sub.add_parser(
        "eval-control", help="evaluate a policy on a gymnasium robot task: success rate, mean return, videos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run seeded, deterministic episodes of a policy on gymnasium's Pusher-v5 or Reacher-v5 and\n"
                    "report the success rate (Pusher-v5: the object ends >= 0.10 m closer to the goal; Reacher-v5:\n"
                    "the fingertip ends within 0.02 m of the target), the mean return and the final distance.\n"
                    "--policy: `expert` (the scripted expert), a policy directory or policy.pt written by\n"
                    "`rlpf control` (control head or MLP), or an SB3 model (.zip, or a directory with model.zip).",
        epilog="examples:\n  rlpf eval-control --env Pusher-v5 --policy expert --episodes 20\n"
               "  rlpf eval-control --env Pusher-v5 --policy runs/control/policies/head-base/Pusher-v5 "
               "--episodes 50 --out report.json --video videos/",
    )
    ec.add_argument("--env", required=True, help="gymnasium env id: Pusher-v5 or Reacher-v5")
    ec.add_argument("--policy", required=True, help="expert, a policy directory / policy.pt, or an SB3 .zip")
    ec.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    ec.add_argument("--seed", type=int, default=1000, help="seed of the first episode (default 1000)")
    ec.add_argument("--out", help="write the JSON report here")
    ec.add_argument("--video", metavar="DIR", help="write mp4s of the first --video-episodes episodes here")
    ec.add_argument("--video-episodes", type=int, default=2, metavar="N", help="episodes to render (default 2)")
    ec.add_argument("--quiet", action="store_true", help="no progress bar")
    ec.set_defaults(func=cmd_eval_control)

    ct = sub.add_parser(
        "control", help="compare controllers on gymnasium tasks: control head on world models vs BC, RL, expert",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate, per task: the scripted expert, an MLP behaviour-cloned on raw state, SB3\n"
                    "RL from scratch at a stated env-step budget, and the control head (action query tokens on\n"
                    "a world model's hidden states) on every backbone in `backbones` (a missing base backbone\n"
                    "is pretrained; one without a trainer is skipped with the reason). Writes RUN/report.json\n"
                    "with a `table` of {method, env, success_rate, return_mean, env_steps}, videos in\n"
                    "RUN/videos, TensorBoard logs under RUN/policies. Running it again reuses finished parts.",
    )
    _lazy_epilog(ct, lambda: "config fields (YAML via --config, or key=value; nested as head.head=flow):\n"
                 + describe(_control_config())
                 + "\n\nexamples:\n  rlpf control --config experiments/configs/control_pusher.yaml --out runs/control\n"
                   "  rlpf control --config experiments/configs/control_pusher.yaml envs=[Reacher-v5] "
                   "eval_episodes=10 --out runs/control-quick")
    ct.add_argument("--config", help="YAML file with ControlConfig fields (default: the built-in defaults)")
    ct.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    ct.add_argument("--quiet", action="store_true", help="no progress bars")
    ct.set_defaults(overrides=[], func=cmd_control)

    w = sub.add_parser("worlds", help="list built-in worlds and reward terms")
    w.set_defaults(func=cmd_worlds)
    return p


def _lazy_epilog(parser: argparse.ArgumentParser, make) -> None:
    """Build an epilog only when that command's --help is shown (it imports torch)."""
    plain = parser.format_help

    def format_help():
        if parser.epilog is None:
            parser.epilog = make()
        return plain()

    parser.format_help = format_help


def _pretrain_config():
    from rlpf.pretrain import PretrainConfig

    return PretrainConfig


def _rlpf_config():
    from rlpf.experiment import RLPFConfig

    return RLPFConfig


def cmd_train(args) -> int:
    from rlpf.config import load_config
    from rlpf.experiment import RLPFConfig, train_rlpf

    cfg = load_config(RLPFConfig, args.config, args.overrides)
    train_rlpf(cfg, args.out, progress=not args.quiet)
    with open(os.path.join(args.out, "report.md")) as f:
        print(f.read())
    print(f"report: {os.path.join(args.out, 'report.md')} (and report.json); TensorBoard: tensorboard --logdir {args.out}/tb")
    return 0


def cmd_score(args) -> int:
    from tqdm import tqdm

    from rlpf.clips import clip_files
    from rlpf.config import load_config
    from rlpf.outputs import EXIT_WRITE_FAILED, check_output_file, write_or_rescue
    from rlpf.scoring import ScoreConfig, format_table, score

    paths, overrides = [], []
    for a in args.paths + args.overrides:  # a path-less key=value given first lands in paths
        (overrides if "=" in a and not os.path.exists(a) else paths).append(a)
    if args.examples:
        paths.append(EXAMPLES_DIR)
    if not paths:
        print("rlpf score: give clip files or directories, or --examples", file=sys.stderr)
        return 2
    cfg = load_config(ScoreConfig, args.config, overrides)
    if args.world:
        cfg.world = args.world
    if args.tracker:
        cfg.trackers = list(dict.fromkeys(args.tracker))
    if args.out:  # before the work: a report that cannot be written is known now, not after scoring
        check_output_file(args.out, inputs=paths)
    n_files = sum(1 for _ in clip_files(paths))
    with tqdm(total=None, unit="clip", desc="scoring", disable=args.quiet or n_files < 2, file=sys.stderr) as bar:
        report = score(paths, cfg.world, cfg.trackers, cfg.weights, cfg.thresholds, cfg.tracker_workers,
                       progress=bar.update).to_json()
    written = write_or_rescue(args.out, report, "score") if args.out else True
    if not args.quiet:
        print(format_table(report))
        if args.out and written:
            print(f"report: {args.out}")
    if not written:
        return EXIT_WRITE_FAILED
    return 1 if report["errors"] else 0


def cmd_simulate(args) -> int:
    from tqdm import tqdm

    from rlpf import corrupt
    from rlpf.clips import save_clips
    from rlpf.envs.worlds import UnknownWorldError, get_world
    from rlpf.policies import scripted
    from rlpf.simulate import simulate

    try:
        world = get_world(args.world)
    except UnknownWorldError as e:
        print(f"rlpf simulate: {e}", file=sys.stderr)
        return 2
    unknown = [k for k in args.corrupt if k not in corrupt.CORRUPTIONS]
    if unknown:
        print(f"rlpf simulate: unknown corruption {unknown}; choose from {sorted(corrupt.CORRUPTIONS)}", file=sys.stderr)
        return 2
    if args.controller == "auto":  # the world's own scripted controller (World.controller), else random
        from rlpf.envs.worlds import resolve

        try:
            make = scripted.SmoothRandom if world.controller is None else \
                resolve(world.controller, f"world {world.name!r}: controller")
        except UnknownWorldError as e:
            print(f"rlpf simulate: {e}", file=sys.stderr)
            return 2
    else:
        make = {"random": scripted.SmoothRandom, "gait": scripted.AntGait, "push": scripted.PusherScript}[args.controller]
    from rlpf.outputs import check_output_dir

    check_output_dir(args.out)
    for i in tqdm(range(args.n), desc=f"simulating {world.name}", unit="clip", file=sys.stderr):
        clip = simulate(world, make(), args.frames, seed=args.seed + i)
        save_clips(os.path.join(args.out, f"{world.name}_{i:03d}.npz"), clip)
        for kind in args.corrupt:
            try:
                bad = corrupt.CORRUPTIONS[kind](clip)
            except ValueError as e:
                print(f"rlpf simulate: skipping {kind}: {e}", file=sys.stderr)
                continue
            save_clips(os.path.join(args.out, f"{world.name}_{i:03d}_{kind}.npz"), bad)
    print(f"wrote {args.n} clips of {world.name} to {args.out}")
    return 0


def cmd_data(args) -> int:
    import time
    from collections import Counter

    from tqdm import tqdm

    from rlpf.motion_data import PROMPTS, add_artifacts, artifact_kind, make_dataset, save_dataset

    def fail(msg: str) -> int:
        print(f"rlpf data: {msg}", file=sys.stderr)
        return 2

    if args.world not in PROMPTS:  # a world declares its data (World.data); registered worlds included
        return fail(f"unknown world {args.world!r}: motion data exists for {sorted(PROMPTS)}")
    if args.n < 1:
        return fail(f"--n must be at least 1, got {args.n}")
    if args.frames < 4 or args.frames % 4:
        return fail(f"--frames must be a positive multiple of 4, got {args.frames}")
    if not 0.0 <= args.artifacts <= 1.0:
        return fail(f"--artifacts must be a fraction in [0, 1], got {args.artifacts}")
    if args.workers is not None and args.workers < 1:
        return fail(f"--workers must be at least 1, got {args.workers}")
    if os.path.isdir(args.out) and any(f.endswith(".npz") for f in os.listdir(args.out)):
        return fail(f"{args.out} already holds .npz clips; give an empty or new directory")
    from rlpf.outputs import check_output_dir

    check_output_dir(args.out)
    t0 = time.perf_counter()
    stats: dict = {}
    try:
        with tqdm(total=args.n, desc=f"simulating {args.world}", unit="clip", file=sys.stderr,
                  disable=args.quiet) as bar:
            clips = make_dataset(args.world, args.n, seed=args.seed, frames=args.frames, workers=args.workers,
                                 progress=bar.update, stats=stats)
    except RuntimeError as e:
        return fail(str(e))
    if args.artifacts:
        clips = add_artifacts(clips, args.artifacts, seed=args.seed)
    paths = save_dataset(clips, args.out)
    dt = time.perf_counter() - t0
    counts = Counter(c.prompt for c in clips)
    corrupted = Counter(c.prompt for c in clips if artifact_kind(c))
    print(f"{len(clips)} clips of {args.world} ({args.frames} frames at {clips[0].fps:g} fps) in {len(paths)} files "
          f"under {args.out}:")
    for p in PROMPTS[args.world]:
        extra = f"  ({corrupted[p]} with artifacts)" if corrupted[p] else ""
        print(f"  {p:24s} {counts[p]:5d}{extra}")
    rejected = stats["attempts"] - stats["kept"]
    print(f"{stats['attempts']} simulated, {rejected} rejected ({rejected / max(stats['attempts'], 1):.0%}: "
          f"{stats['over_quota']} over quota, {stats['ambiguous']} ambiguous, {stats['diverged']} diverged); "
          f"{dt:.1f} s, {len(clips) / dt:.1f} clips/s")
    return 0


def cmd_pretrain(args) -> int:
    from rlpf.config import load_config
    from rlpf.pretrain import PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    summary = pretrain(cfg, args.out, progress=not args.quiet)
    tok, lm = summary["tokenizer"], summary["lm"]
    print(f"pretrained {cfg.world} world model in {args.out}  ({summary['n_train']} training clips, "
          f"{summary['n_artifacts']} with artifacts)")
    where = "root" if "root_pos_m" in tok else "object"
    print(f"  tokenizer (held-out reconstruction): {where} {tok.get(where + '_pos_m', float('nan')):.3f} m, "
          f"joints {tok.get('joint_rad', float('nan')):.3f} rad, codebook usage {tok.get('codebook_usage', float('nan')):.2f}")
    print(f"  LM: {lm['parameters']:,} parameters, held-out loss {lm['val_loss']:.3f}")
    print("  time: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in summary["timings"].items()))
    print(f"next: rlpf evaluate --checkpoint {args.out}   |   rlpf generate --checkpoint {args.out} --prompt '{lm['prompts'][0]}' --out clips/")
    return 0


def cmd_generate(args) -> int:
    from rlpf.clips import load_clips, save_clips
    from rlpf.errors import RLPFError
    from rlpf.outputs import check_output_dir, check_output_file
    from rlpf.world_model import WorldModel

    if args.n < 1 or args.context < 1 or not args.temperature > 0:
        raise RLPFError(f"--n and --context must be >= 1 and --temperature > 0 (got {args.n}, {args.context}, "
                        f"{args.temperature})")
    wm = WorldModel.from_pretrained(args.checkpoint)
    first = None
    inputs = [args.checkpoint] + ([args.first_frames] if args.first_frames else [])
    if args.first_frames:
        first = load_clips(args.first_frames)[0].qpos[:args.context]
    for p in args.prompt:
        wm.check_prompt(p)
    check_output_dir(args.out, inputs=inputs)
    paths = {prompt: os.path.join(args.out, "_".join(prompt.split()) + ".npz") for prompt in args.prompt}
    for path in paths.values():  # before sampling: never over an input (the --first-frames clip, say)
        check_output_file(path, inputs=inputs)
    for k, (prompt, path) in enumerate(paths.items()):
        clips = wm.generate(prompt, n=args.n, temperature=args.temperature, first_frames=first, seed=args.seed + k)
        save_clips(path, clips, world=wm.world)
        print(f"{path}: {len(clips)} clips of '{prompt}' ({wm.n_frames} frames at {wm.fps:g} fps)")
    print(f"score them: rlpf score {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from rlpf.clips import load_clips
    from rlpf.errors import RLPFError
    from rlpf.evaluation import evaluate_world_model, format_evaluation
    from rlpf.motion_evaluator import load as load_evaluator
    from rlpf.outputs import EXIT_WRITE_FAILED, check_output_file, write_or_rescue
    from rlpf.world_model import WorldModel

    if args.n < 2 or not args.temperature > 0:
        raise RLPFError(f"--n must be >= 2 and --temperature > 0 (got {args.n}, {args.temperature})")
    wm = WorldModel.from_pretrained(args.checkpoint)
    run = args.checkpoint if os.path.isdir(os.path.join(args.checkpoint, "model")) else os.path.dirname(args.checkpoint.rstrip("/"))
    out = args.out or os.path.join(run, "eval.json")
    heldout_path = os.path.join(run, "heldout.npz")
    check_output_file(out, inputs=[os.path.join(run, "model"), os.path.join(run, "evaluator"), heldout_path])
    evaluator = load_evaluator(os.path.join(run, "evaluator"))
    heldout = load_clips(heldout_path)
    report = evaluate_world_model(wm, evaluator, heldout, n_per_prompt=args.n,
                                  temperature=args.temperature, seed=args.seed)
    print(format_evaluation(report))
    if not write_or_rescue(out, report, "evaluate"):
        return EXIT_WRITE_FAILED
    print(f"report: {out}")
    return 0


def cmd_track(args) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering (see rlpf.render)
    from tqdm import tqdm

    from rlpf import track_report
    from rlpf.clips import load_by_world
    from rlpf.envs.worlds import get_world
    from rlpf.errors import RLPFError
    from rlpf.outputs import EXIT_WRITE_FAILED, check_output_dir, check_output_file, write_or_rescue
    from rlpf.tracking import load_tracker

    def fail(msg: str) -> int:
        print(f"rlpf track: {msg}", file=sys.stderr)
        return 2

    if args.max_videos < 0 or args.size < 16:
        return fail("--max-videos must be >= 0 and --size >= 16")
    if args.world:
        get_world(args.world)
    # outputs checked before any tracking: finished work must not meet an unwritable place
    if args.out:
        check_output_file(args.out, inputs=args.paths)
    if args.video and args.max_videos:
        check_output_dir(args.video, inputs=args.paths, what="--video")
    by_world, errors = load_by_world(args.paths, args.world)
    tracked = []  # (clip, result, world, entry)
    with tqdm(total=sum(map(len, by_world.values())), desc=f"tracking ({args.tracker})", unit="clip",
              file=sys.stderr, disable=args.quiet) as bar:
        for name, clips in by_world.items():
            try:
                tracker = load_tracker(args.tracker, name)
            except RLPFError as e:  # a bug inside a tracker keeps its traceback
                return fail(f"cannot load tracker {args.tracker!r} for world {name!r}: {e}")
            results = tracker.track(clips, workers=args.workers, progress=bar.update)
            tracked += [(c, r, name, track_report.result_entry(c, r, name)) for c, r in zip(clips, results)]
    if args.video and tracked and args.max_videos:
        from rlpf.render import RenderError, render_tracking_video

        taken: set[str] = set()
        todo = tracked[:args.max_videos]
        for clip, result, name, entry in tqdm(todo, desc="rendering", unit="video", file=sys.stderr,
                                              disable=args.quiet):
            path = track_report.unique_video_path(args.video, clip.source, taken)
            try:
                entry["video"] = render_tracking_video(clip, result, path, world=name, width=args.size, height=args.size)
            except RenderError as e:
                errors.append({"source": clip.source, "error": f"video: {e}"})
                if "OpenGL" in str(e):
                    break  # no GL backend: every other video would fail the same way
    entries = [t[3] for t in tracked]
    worlds = sorted({t[2] for t in tracked} | ({args.world} if args.world else set()))
    report = {
        "world": worlds[0] if len(worlds) == 1 else ("mixed" if worlds else None),
        "tracker": args.tracker,
        "clips": entries,
        "errors": errors,
        "summary": track_report.summarize(entries, errors),
    }
    written = write_or_rescue(args.out, report, "track") if args.out else True
    if not args.quiet:
        print(track_report.format_table(report))
        if report["summary"]["n_videos"]:
            print(f"videos: {args.video}")
        if args.out and written:
            print(f"report: {args.out}")
    elif errors:
        for e in errors:
            print(f"rlpf track: {e['source']}: {e['error']}", file=sys.stderr)
    if not written:
        return EXIT_WRITE_FAILED
    return 1 if errors else 0


def _tracker_config():
    from rlpf.policies.learned_tracker import TrackerTrainConfig

    return TrackerTrainConfig


def cmd_train_tracker(args) -> int:
    from rlpf.config import load_config
    from rlpf.policies.learned_tracker import TrackerTrainConfig, train_tracker

    cfg = load_config(TrackerTrainConfig, args.config, args.overrides)
    summary = train_tracker(cfg, args.out, progress=not args.quiet)
    t = summary["timings"]
    if summary.get("cached"):
        print(f"{cfg.world} tracker in {args.out} already trained ({summary.get('num_timesteps', t.get('steps', 0)):,} "
              "steps): nothing to do (a larger total_timesteps=N trains it further)")
    else:
        print(f"trained {cfg.world} tracker in {args.out}  ({summary['n_train']} library clips, "
              f"{t.get('steps', 0):,} steps this run at {t.get('steps_per_s') or 0:.0f} steps/s)")
    for kind, e in summary.get("eval", {}).items():
        print(f"  held-out {kind:8s} (n={e['n']}): success {e['success_rate']:.2f}, mean body error "
              f"{e['mean_body_error_m']:.3f} m, fell {e['fell']}, diverged {e['diverged']}")
    print(f"tensorboard --logdir {os.path.join(args.out, 'tb')}")
    return 0


def _control_config():
    from rlpf.control import ControlConfig

    return ControlConfig


def cmd_eval_control(args) -> int:
    from rlpf.control_eval import evaluate, load_policy
    from rlpf.outputs import EXIT_WRITE_FAILED, check_output_dir, check_output_file, write_or_rescue

    if args.out:
        check_output_file(args.out, inputs=[args.policy])
    if args.video and args.video_episodes:
        check_output_dir(args.video, inputs=[args.policy], what="--video")
    policy = load_policy(args.policy, args.env)
    report = evaluate(policy, args.env, args.episodes, args.seed, args.video, args.video_episodes,
                      label=os.path.basename(os.path.normpath(args.policy)), progress=not args.quiet)
    if args.out and not write_or_rescue(args.out, report, "eval-control"):
        return EXIT_WRITE_FAILED
    print(f"{args.env} {args.policy}: success {report['success_rate']:.2f} ({report['success_rule']}), "
          f"return {report['return_mean']:.2f} +- {report['return_std']:.2f}, final distance "
          f"{report['final_distance_mean']:.3f} m over {report['episodes']} episodes (seeds {args.seed}..)")
    for v in report["videos"]:
        print(f"  video {v}")
    return 0


def cmd_control(args) -> int:
    from rlpf.config import load_config
    from rlpf.control import ControlConfig, format_table, run_control

    cfg = load_config(ControlConfig, args.config, args.overrides)
    report = run_control(cfg, args.out, progress=not args.quiet)
    print(format_table(report))
    print(f"report: {os.path.join(args.out, 'report.json')}  ({report['timings']['total_s']:.0f} s)")
    return 0


def cmd_worlds(args) -> int:
    from rlpf.envs.worlds import compile_world, registered_worlds
    from rlpf.rewards.registry import registered

    print("worlds:")
    for name, w in registered_worlds().items():  # built-ins and worlds registered in this process
        cw = compile_world(name)
        print(f"  {name:9s} {w.gym_id or '-':12s} nq={cw.nq:<3d} fps={w.fps:.1f}  feet={len(w.feet)} objects={list(w.objects)}")
    print("reward terms (name, plausible threshold, unit):")
    for name, info in sorted(registered().items()):
        th = "-" if info.threshold is None else f"{info.threshold:g}"
        print(f"  {name:24s} <= {th:6s} {info.unit:18s} {info.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
