"""``rlpf score``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_score`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os
import sys

from rlpf.core.config import describe
from rlpf.judge.scoring import ScoreConfig

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")


def add_parser(sub: argparse._SubParsersAction) -> None:
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
                 "  rlpf score clips/ --tracker pd --tracker runs/tracker-ant   # compare two trackers\n"
                 "  rlpf score clips/ --filter plausible --out-dir kept/ --backend ray   # curate a dataset",
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
    s.add_argument("--backend", metavar="local|ray",
                   help="where the tracking pass runs: local processes (default) or ray actors (ray extra)")
    s.add_argument("--address", metavar="HOST:PORT",
                   help="Ray cluster for --backend ray (default RAY_ADDRESS, else a local Ray is started)")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes / Ray actors for the tracking pass, and with --filter for the whole "
                        "scoring (default min(2, CPUs))")
    s.add_argument("--filter", metavar="plausible|tracked",
                   help="dataset curation (with --out-dir): copy the clips that pass into --out-dir and write "
                        "--out-dir/manifest.jsonl, one row per clip (kept or rejected, the failing terms); streams "
                        "chunk by chunk, a rerun skips the clips already in the manifest. plausible: no term above "
                        "its threshold (and tracked, with --tracker); tracked: the tracker succeeds (needs --tracker)")
    s.add_argument("--out-dir", metavar="KEPT",
                   help="where --filter writes the kept clips (named after their source) and the manifest; "
                        "never an input directory or inside one")
    s.add_argument("--chunk-files", type=int, default=None, metavar="N",
                   help="with --filter: files per chunk sent to a worker (default 8)")
    s.add_argument("--pose", metavar="RUN",
                   help="a trained pose run (rlpf train-pose): video files (.mp4) among the inputs (or in input "
                        "directories) are lifted to clips and scored like clips; a video that cannot be read is "
                        "one error entry. The lifted clips are written beside the report (--lifted)")
    s.add_argument("--lifted", metavar="DIR",
                   help="with --pose: where the lifted clips (<video name>.npz) go; default the --out report's "
                        "directory, else ./lifted")
    s.add_argument("--refine", action="store_true",
                   help="with --pose: fit each lifted pose to its frame by rendering it (rlpf lift --refine)")
    s.add_argument("--quiet", action="store_true", help="no table, no progress bar")
    s.set_defaults(overrides=[])
    s.set_defaults(func=cmd_score)


def cmd_score(args) -> int:
    import dataclasses

    from tqdm import tqdm

    from rlpf.core.clips import clip_files
    from rlpf.core.config import load_config
    from rlpf.core.outputs import EXIT_WRITE_FAILED, check_output_file, write_or_rescue
    from rlpf.judge.scoring import ScoreConfig, format_table, score

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
    if args.backend is not None or args.address is not None:  # checked as the config fields are
        cfg = dataclasses.replace(cfg, backend=args.backend or cfg.backend, address=args.address or cfg.address)
    if args.workers is not None:
        cfg = dataclasses.replace(cfg, tracker_workers=args.workers)
    from rlpf.lifting.frames import is_video, video_files

    videos = [p for p in video_files(paths) if is_video(p)]
    if args.pose is None and videos:
        print(f"rlpf score: {videos[0]} is a video: give --pose RUN (a trained rlpf train-pose run) to lift "
              "and score videos", file=sys.stderr)
        return 2
    if args.refine and args.pose is None:
        print("rlpf score: --refine refines lifted videos; it needs --pose RUN", file=sys.stderr)
        return 2
    if args.pose is not None and (args.filter is not None or args.out_dir is not None):
        print("rlpf score: --pose scores videos; --filter / --out-dir curate clip files (lift first: rlpf lift)",
              file=sys.stderr)
        return 2
    if args.filter is not None or args.out_dir is not None:
        return _curate(args, paths, cfg)
    if args.out:  # before the work: a report that cannot be written is known now, not after scoring
        check_output_file(args.out, inputs=paths)
    if args.pose is not None:
        return _score_videos(args, paths, videos, cfg)
    n_files = sum(1 for _ in clip_files(paths))
    with tqdm(total=None, unit="clip", desc="scoring", disable=args.quiet or n_files < 2, file=sys.stderr) as bar:
        report = score(paths, cfg.world, cfg.trackers, cfg.weights, cfg.thresholds, cfg.tracker_workers,
                       progress=bar.update, backend=cfg.backend, address=cfg.address).to_json()
    written = write_or_rescue(args.out, report, "score") if args.out else True
    if not args.quiet:
        print(format_table(report))
        if args.out and written:
            print(f"report: {args.out}")
    if not written:
        return EXIT_WRITE_FAILED
    return 1 if report["errors"] else 0


def _score_videos(args, paths: list[str], videos: list[str], cfg) -> int:
    """``--pose``: lift the videos (rlpf.lifting), write the lifted clips beside the report, and score
    them with the clip files in one report; a video's entry keeps the video as its source and names
    its lifted clip (``lifted``) and mean confidence (``lift_confidence``)."""
    from tqdm import tqdm

    from rlpf.core.clips import ClipError, clip_files, load_clips
    from rlpf.core.outputs import EXIT_WRITE_FAILED, check_output_dir, write_or_rescue
    from rlpf.envs.worlds import compile_world
    from rlpf.judge.scoring import format_table, score
    from rlpf.lifting.inference import PoseLifter, lift_files

    lifter = PoseLifter.load(args.pose, refine=args.refine)
    if cfg.world is not None and compile_world(cfg.world).name != lifter.world:
        print(f"rlpf score: --world {cfg.world} but the pose run {args.pose} lifts {lifter.world!r} videos",
              file=sys.stderr)
        return 2
    lifted_dir = args.lifted or (os.path.dirname(os.path.abspath(args.out)) if args.out else "lifted")
    check_output_dir(lifted_dir, inputs=paths, what="--lifted")
    clip_paths = [f for f in clip_files([p for p in paths if p not in videos]) if f not in videos]
    with tqdm(total=len(videos), unit="video", desc="lifting", disable=args.quiet or not videos,
              file=sys.stderr) as bar:
        lifted = lift_files(videos, lifter, lifted_dir, progress=bar.update, protect=clip_paths)
    clips, errors = [c["lifted"] for c in lifted["clips"]], list(lifted["errors"])
    for path in clip_paths:
        try:
            clips += load_clips(path)
        except ClipError as e:
            errors.append({"source": e.source, "error": e.problem})
    if clips:
        report = score(clips, cfg.world, cfg.trackers, cfg.weights, cfg.thresholds, cfg.tracker_workers,
                       backend=cfg.backend, address=cfg.address).to_json()
    else:
        report = {"world": cfg.world or lifter.world, "clips": [], "errors": [],
                  "summary": {"n_clips": 0, "n_errors": 0, "plausible_rate": None, "mean_score": None}}
    by_video = {c["source"]: c for c in lifted["clips"]}
    for entry in report["clips"]:
        if entry["source"] in by_video:
            entry["lifted"] = by_video[entry["source"]]["clip"]
            entry["lift_confidence"] = by_video[entry["source"]]["confidence"]
    report["errors"] = errors + report["errors"]
    report["summary"]["n_errors"] = len(report["errors"])
    written = write_or_rescue(args.out, report, "score") if args.out else True
    if not args.quiet:
        print(format_table(report))
        if lifted["clips"]:
            print(f"lifted clips: {lifted_dir}")
        if args.out and written:
            print(f"report: {args.out}")
    if not written:
        return EXIT_WRITE_FAILED
    return 1 if report["errors"] else 0


def _curate(args, paths: list[str], cfg) -> int:
    """``--filter`` / ``--out-dir``: rlpf.judge.curation (streaming, resumable); exit 1 when any input failed."""
    from tqdm import tqdm

    from rlpf.judge.curation import CHUNK_FILES, CurationError, curate, format_summary

    if args.filter is None or args.out_dir is None:
        raise CurationError("--filter and --out-dir go together: --filter plausible --out-dir KEPT/")
    if args.out:
        raise CurationError("--out is the report of a plain rlpf score; with --filter the report is "
                            "--out-dir/manifest.jsonl (one row per clip) and --out-dir/curation.json")
    with tqdm(total=None, unit="file", desc=f"curating ({args.filter})", disable=args.quiet, file=sys.stderr,
              dynamic_ncols=True) as bar:
        def total(n):
            bar.total = n
            bar.refresh()

        summary = curate(paths, args.out_dir, cfg, args.filter, workers=cfg.tracker_workers, progress=bar.update,
                         total=total, chunk_files=CHUNK_FILES if args.chunk_files is None else args.chunk_files)
    if not args.quiet:
        print(format_summary(summary, args.out_dir))
    return 1 if summary["this_run"]["n_errors"] else 0
