"""``rlpf track``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_track`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    tr.add_argument("--backend", default="local", metavar="local|ray",
                    help="where the tracking workers run: local processes (default) or ray actors (ray extra)")
    tr.add_argument("--address", metavar="HOST:PORT",
                    help="Ray cluster for --backend ray (default RAY_ADDRESS, else a local Ray is started)")
    tr.add_argument("--quiet", action="store_true", help="no table, no progress bars")
    tr.set_defaults(func=cmd_track)


def cmd_track(args) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering (see rlpf.viz.render)
    from tqdm import tqdm

    from rlpf.core.clips import load_by_world
    from rlpf.core.backend import check_backend
    from rlpf.core.errors import RLPFError
    from rlpf.core.outputs import EXIT_WRITE_FAILED, check_output_dir, check_output_file, write_or_rescue
    from rlpf.envs.worlds import get_world
    from rlpf.judge import track_report
    from rlpf.judge.tracking import load_tracker

    def fail(msg: str) -> int:
        print(f"rlpf track: {msg}", file=sys.stderr)
        return 2

    if args.max_videos < 0 or args.size < 16:
        return fail("--max-videos must be >= 0 and --size >= 16")
    if args.world:
        get_world(args.world)
    check_backend(args.backend)
    if args.address is not None and args.backend != "ray":
        return fail(f"--address {args.address!r} is for --backend ray (the local backend runs on this machine)")
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
            # the backend only when one is asked for: a tracker that overrides track() with the
            # plain (clips, workers, progress) signature keeps working on the default local pool
            where = {"backend": args.backend, "address": args.address} \
                if args.backend != "local" or args.address else {}
            results = tracker.track(clips, workers=args.workers, progress=bar.update, **where)
            tracked += [(c, r, name, track_report.result_entry(c, r, name)) for c, r in zip(clips, results)]
    if args.video and tracked and args.max_videos:
        from rlpf.viz.render import RenderError, render_tracking_video

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
