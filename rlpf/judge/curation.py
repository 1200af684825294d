"""Dataset curation: score every clip under some directories and keep the ones that pass, streaming
and resumable. The engine behind ``rlpf score DIR --filter plausible --out-dir KEPT/``.

Data flow, one chunk of ``chunk_files`` files at a time::

    clip files (a generator: os.walk, sorted) -> skip those KEPT/manifest.jsonl already lists
      -> load the chunk here (load_clips: sizes checked before decompressing; a broken file is a row)
      -> backend worker (local process or Ray actor): validate, physics terms, tracking pass
      -> here, in input order: copy each kept clip into KEPT/, append one manifest row per clip

Memory does not grow with the dataset: at most ``IN_FLIGHT_PER_WORKER`` chunks per worker are loaded
or being scored at any time, rows go to disk as each chunk finishes, and what is kept across the run
is one path string per scored file (the resume set) and per kept clip (the names taken). The clips
travel with their chunk (small: ~8 bytes x nq per frame), so a Ray worker on another node needs no
access to the inputs; the driver alone reads the inputs and writes KEPT/.

Resumable: the manifest is appended (flushed and fsynced) once per finished chunk, after the chunk's
kept clips are written (atomically: tmp file, then rename). A killed run leaves at worst a partial
last line (dropped when the next run opens the manifest) and kept clips of a chunk it had not logged
(rewritten identically). A rerun with the same ``--out-dir`` skips every file the manifest lists;
``KEPT/curation.json`` records the settings, and a rerun with other settings (filter, world, tracker,
weights, thresholds) is refused: its verdicts would mix two filters.

A file that cannot be read or validated is a row ``kept: false`` with its ``error``; the rest go on.
A worker that dies under a chunk (killed, or a clip that crashes the simulator natively) fails that
chunk; its files are then scored one per chunk, so only a file that kills its worker alone is
recorded, as an error, and the others are scored as usual.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from rlpf.core.errors import RLPFError

FILTERS = {
    "plausible": "no term above its plausibility threshold (with --tracker also tracked: the report's "
                 "'plausible' flag); reasons: the terms above their thresholds",
    "tracked": "the tracker replays the clip successfully (needs --tracker); reasons: tracking_success "
               "and tracking_error_m; the physics terms are recorded but do not decide",
}
"""What ``--filter`` accepts and what each keeps."""

MANIFEST = "manifest.jsonl"
"""One JSON object per line, one line per scored clip (``curate``'s docstring: the fields)."""
SETTINGS = "curation.json"
"""The settings the manifest's verdicts were made with, and the running totals."""

CHUNK_FILES = 8
"""Files per chunk sent to a worker. A chunk costs one round trip and one pickled message (on Ray, one
object-store transfer, ~ms); a 64-200-frame ant clip costs 30-70 ms to score with the PD tracker
here, so 8 files amortize the transfer to a few percent while keeping the lost work of a dead worker,
and the memory in flight, small."""
IN_FLIGHT_PER_WORKER = 2
"""Chunks loaded or being scored per worker: one running, one queued, so a worker never waits for the
driver to load its next chunk; memory is bounded by workers x this x CHUNK_FILES clips."""


class CurationError(RLPFError, ValueError):
    """A curation that cannot start: an unknown filter, an --out-dir that is (inside) an input,
    an --out-dir curated with other settings."""


@dataclass
class _File:
    """One input file of a chunk, as loaded in the driver."""

    path: str
    """As found (the report's ``source`` spelling)."""
    out: str
    """Its kept name relative to the output directory (a batch file's clip i: ``stem_i.npz``)."""
    clips: list | None = None
    error: str | None = None


def check_filter(name: str, trackers: list) -> str:
    if name not in FILTERS:
        raise CurationError(f"unknown --filter {name!r}: choose one of "
                            + "; ".join(f"{k} ({v})" for k, v in FILTERS.items()))
    if name == "tracked" and not trackers:
        raise CurationError("--filter tracked needs a tracker: add --tracker pd (or learned, or a tracker's run directory)")
    if len(trackers) > 1:
        raise CurationError(f"--filter judges with one tracker; {len(trackers)} given ({', '.join(map(str, trackers))})")
    return name


def check_out_dir(out_dir: str, inputs: Iterable[str]) -> str:
    """The real path of ``out_dir`` if it may receive kept clips; CurationError when it is an input
    directory, inside one (its clips would be found as inputs on the next run) or holds one."""
    from rlpf.core.outputs import check_output_dir

    target = os.path.realpath(out_dir)
    for p in inputs:
        if not os.path.isdir(p):
            continue
        root = os.path.realpath(p)
        if target == root or target.startswith(root + os.sep):
            raise CurationError(f"--out-dir {out_dir}: {'is' if target == root else 'is inside'} the input "
                                f"directory {p}; kept clips must go elsewhere (they would be written among, "
                                "or scored again as, the inputs)")
        if root.startswith(target + os.sep):
            raise CurationError(f"--out-dir {out_dir}: holds the input directory {p}; choose a directory "
                                "outside the inputs")
    return check_output_dir(out_dir, inputs=inputs, what="--out-dir")  # creates it: after the refusals


def _walk(paths: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(file, its kept name) for every clip file under ``paths``: a directory's files keep their path
    relative to it, a file named directly its basename."""
    from rlpf.core.clips import clip_files

    for p in paths:
        if os.path.isdir(p):
            for f in clip_files([p]):
                yield f, os.path.relpath(f, p)
        else:
            yield p, os.path.basename(p) or p


def _read_manifest(path: str) -> tuple[set, set, collections.Counter]:
    """(real paths of the scored files, kept names taken, counts) from an existing manifest; a partial
    last line (a run killed while writing it) is cut off so that appending starts on a fresh line."""
    done, taken, counts = set(), set(), collections.Counter()
    if not os.path.isfile(path):
        return done, taken, counts
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        done.add(row.get("file"))
        if row.get("out"):
            taken.add(row["out"])
        counts["kept" if row.get("kept") else ("errors" if row.get("error") else "rejected")] += 1
    return done, taken, counts


def _settings(cfg, filter_name: str) -> dict:
    weights = cfg.resolved_weights()
    return {"filter": filter_name, "world": cfg.world, "trackers": list(cfg.trackers), "weights": weights,
            "thresholds": cfg.resolved_thresholds(weights)}


def _claim(out_dir: str, settings: dict) -> None:
    """Refuse an out dir curated with other settings; record ours (before any clip is written)."""
    from rlpf.core.outputs import write_json

    path = os.path.join(out_dir, SETTINGS)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                old = json.load(f).get("settings")
        except (OSError, ValueError, AttributeError):
            old = None
        if old is not None and old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise CurationError(f"--out-dir {out_dir} was curated with other settings (differing: {', '.join(diff)}; "
                                f"see {path}); rerun with those, or give a new --out-dir")
        if old is not None:
            return
    elif os.path.isfile(os.path.join(out_dir, MANIFEST)):
        raise CurationError(f"--out-dir {out_dir} has a {MANIFEST} but no {SETTINGS}: not made by rlpf score "
                            "--filter; give a new --out-dir")
    write_json(path, {"settings": settings, "summary": None})


def curate(paths: list[str], out_dir: str, cfg=None, filter_name: str = "plausible", workers: int | None = None,
           chunk_files: int = CHUNK_FILES, progress: Callable[[int], None] | None = None,
           total: Callable[[int], None] | None = None) -> dict:
    """Score every clip file under ``paths`` with ``cfg`` (a ``ScoreConfig``: world, weights,
    thresholds, one tracker, backend, address) and copy those that pass ``filter_name`` into
    ``out_dir``; returns the summary (also in ``out_dir/curation.json``).

    Kept clips keep their file's path relative to the input directory (a file named directly: its
    basename); a single-clip file is copied byte for byte, clip i of a batch file is written alone
    as ``stem_i.npz``; a name another source took already gets ``-2``, ``-3``... Each scored clip is
    a line of ``out_dir/manifest.jsonl``: ``source`` (as in the report), ``file`` (its real path, the
    resume key), ``kept``, ``out`` (the kept name or null), ``world``, ``score``, ``reasons`` (the
    failing terms and their values; {} when kept), ``terms`` (all of them) and ``error`` (why the
    clip could not be scored, else null). ``workers``: backend workers (default min(2, CPUs)).
    ``progress(n)``: called with the number of files done; ``total(n)``: once, with the number to do.
    """
    from rlpf.core.backend import make_backend
    from rlpf.judge.scoring import ScoreConfig, _check_plugins_and_trackers

    cfg = cfg or ScoreConfig()
    check_filter(filter_name, cfg.trackers)
    _check_plugins_and_trackers(cfg)
    if isinstance(chunk_files, bool) or not isinstance(chunk_files, int) or chunk_files < 1:
        raise CurationError(f"chunk_files={chunk_files!r}: a positive number of files per chunk")
    out_dir = check_out_dir(out_dir, paths)
    for p in paths:
        if not os.path.exists(p):
            raise CurationError(f"{p}: no such file or directory")
    settings = _settings(cfg, filter_name)
    _claim(out_dir, settings)
    manifest_path = os.path.join(out_dir, MANIFEST)
    done, taken, counts = _read_manifest(manifest_path)
    inputs_named = {os.path.realpath(p) for p in paths if not os.path.isdir(p)}
    skipped = 0

    def todo() -> Iterator[tuple[str, str]]:
        nonlocal skipped
        for path, rel in _walk(paths):
            if os.path.realpath(path) in done:
                skipped += 1
                continue
            yield path, rel

    if total is not None:
        total(sum(1 for _ in todo()))
        skipped = 0
    workers = workers or min(2, os.cpu_count() or 1)
    job_cfg = {"world": cfg.world, "weights": dict(cfg.weights), "thresholds": dict(cfg.thresholds),
               "tracker": cfg.trackers[0] if cfg.trackers else None, "filter": filter_name}
    this_run = collections.Counter()
    t0 = time.perf_counter()

    def name_for(rel: str) -> str:
        stem, ext = os.path.splitext(rel)
        name, k = rel, 1
        while name in taken:  # another source has this name (two inputs with equal relative paths)
            k += 1
            name = f"{stem}-{k}{ext or '.npz'}"
        taken.add(name)
        return name

    with open(manifest_path, "a") as manifest, \
            make_backend(cfg.backend, workers, address=cfg.address, label="rlpf-curation") as backend:

        def submit(files: list[_File]):
            ready = [(i, f.clips) for i, f in enumerate(files) if f.clips is not None]
            return backend.submit(_curate_chunk, job_cfg, ready) if ready else None

        def finish(files: list[_File], future, alone: bool = False) -> None:
            outcome = future.result() if future is not None else None
            if outcome is not None and not outcome.ok:
                if not outcome.died:  # a bug in scoring, not a bad clip: stop, the manifest keeps what is done
                    outcome.unwrap()
                if not alone and len([f for f in files if f.clips is not None]) > 1:
                    # one of these files may crash the simulator: score each alone to find which
                    for f in files:
                        finish([f], submit([f]) if f.clips is not None else None, alone=True)
                    return
            rows_by_file = {} if outcome is None or not outcome.ok else dict(outcome.value)
            lines = []
            for i, f in enumerate(files):
                if f.clips is None:
                    rows = [_error_row(f.path, f.error)]
                elif i not in rows_by_file:  # its worker died under it, alone
                    why = f"the scoring worker died on this file ({outcome.error})"
                    rows = [_error_row(c.source, why) for c in f.clips]
                else:
                    rows = rows_by_file[i]
                for k, row in enumerate(rows):
                    row["file"] = os.path.realpath(f.path)
                    row["out"] = None
                    if row["kept"]:
                        row["out"] = _write_kept(f, k, len(f.clips), out_dir, name_for, inputs_named)
                    this_run["kept" if row["kept"] else ("errors" if row["error"] else "rejected")] += 1
                    lines.append(json.dumps(row, sort_keys=True))
                if progress:
                    progress(1)
            if lines:
                manifest.write("\n".join(lines) + "\n")
                manifest.flush()
                os.fsync(manifest.fileno())

        in_flight: collections.deque = collections.deque()
        chunk: list[_File] = []
        for path, rel in todo():
            chunk.append(_load(path, rel))
            if len(chunk) == chunk_files:
                in_flight.append((chunk, submit(chunk)))
                chunk = []
                while len(in_flight) >= IN_FLIGHT_PER_WORKER * workers:
                    finish(*in_flight.popleft())
        if chunk:
            in_flight.append((chunk, submit(chunk)))
        while in_flight:
            finish(*in_flight.popleft())

    seconds = time.perf_counter() - t0
    n_run = sum(this_run.values())
    totals = counts + this_run
    n_all = sum(totals.values())
    summary = {"n_clips": n_all, "n_kept": totals["kept"], "n_rejected": totals["rejected"],
               "n_errors": totals["errors"], "kept_rate": totals["kept"] / n_all if n_all else None,
               "this_run": {"n_clips": n_run, "n_kept": this_run["kept"], "n_rejected": this_run["rejected"],
                            "n_errors": this_run["errors"], "files_skipped": skipped, "seconds": round(seconds, 3),
                            "clips_per_s": round(n_run / seconds, 3) if n_run and seconds > 0 else None,
                            "workers": workers, "backend": cfg.backend}}
    from rlpf.core.outputs import write_json

    write_json(os.path.join(out_dir, SETTINGS), {"settings": settings, "summary": summary})
    return summary


def _load(path: str, rel: str) -> _File:
    from rlpf.core.clips import ClipError, load_clips

    try:
        return _File(path=path, out=rel, clips=load_clips(path))
    except ClipError as e:
        return _File(path=path, out=rel, error=e.problem)
    except OSError as e:  # vanished or unreadable between the listing and now
        return _File(path=path, out=rel, error=f"cannot read: {e.strerror or e}")


def _error_row(source: str, error: str) -> dict:
    return {"source": source, "kept": False, "world": None, "score": None, "reasons": {}, "terms": {}, "error": error}


def _write_kept(f: _File, k: int, n: int, out_dir: str, name_for, inputs_named: set) -> str:
    """Write clip ``k`` of file ``f`` into ``out_dir``; its name there (relative)."""
    from rlpf.core.clips import save_clips

    rel = f.out if n == 1 else f"{os.path.splitext(f.out)[0]}_{k}.npz"
    name = name_for(rel)
    target = os.path.join(out_dir, name)
    if os.path.realpath(target) in inputs_named or os.path.realpath(target) == os.path.realpath(f.path):
        raise CurationError(f"kept clip {target} would overwrite the input {f.path}; choose another --out-dir")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if n == 1:  # the file as it is (every key, exact bytes), not a re-encoding of what was read
        tmp = f"{target}.tmp-{os.getpid()}"
        shutil.copyfile(f.path, tmp)
        os.replace(tmp, target)
    else:
        save_clips(target, f.clips[k])
    return name


# ----------------------------------------------------------------------------------------------
# the worker side

_TRACKERS: dict = {}
"""(world, tracker spec) -> Tracker, built once per worker process and kept across its chunks."""


def _curate_chunk(job_cfg: dict, files: list) -> list:
    """Validate and score the clips of some files; ``[(file index, [row per clip])]``."""
    from rlpf.core.clips import ClipError, checked_world
    from rlpf.envs.worlds import UnknownWorldError
    from rlpf.judge.scoring import ScoreConfig, score_clips
    from rlpf.judge.tracking import load_tracker

    spec = job_cfg["tracker"]
    cfg = ScoreConfig(world=job_cfg["world"], weights=job_cfg["weights"], thresholds=job_cfg["thresholds"],
                      trackers=[spec] if spec else [])
    rows: dict[tuple[int, int], dict] = {}
    groups: dict[str, list] = {}  # world -> [(file index, clip index, clip)]
    for i, clips in files:
        for k, clip in enumerate(clips):
            try:
                checked_world(clip, job_cfg["world"])
            except ClipError as e:
                rows[i, k] = _error_row(clip.source, e.problem)
                continue
            except UnknownWorldError as e:
                rows[i, k] = _error_row(clip.source, str(e))
                continue
            groups.setdefault(job_cfg["world"] or clip.world, []).append((i, k, clip))
    for name, members in groups.items():
        context = {"tracker_workers": 1}  # tracking in this worker: the workers are the parallelism
        if spec:
            if (name, spec) not in _TRACKERS:
                _TRACKERS[name, spec] = load_tracker(spec, name)
            context["tracker"] = _TRACKERS[name, spec]
        entries = score_clips([c for _, _, c in members], name, cfg, **context)
        for (i, k, clip), entry in zip(members, entries):
            if "error" in entry:
                rows[i, k] = _error_row(clip.source, entry["error"])
                continue
            terms = entry["terms"]
            if job_cfg["filter"] == "tracked":
                kept = terms.get("tracking_success", 0.0) >= 1.0
                failing = [] if kept else [t for t in ("tracking_success", "tracking_error_m") if t in terms]
            else:
                kept, failing = entry["plausible"], entry["violations"]
            rows[i, k] = {"source": clip.source, "kept": bool(kept), "world": entry["world"], "score": entry["score"],
                          "reasons": {t: terms[t] for t in failing}, "terms": terms, "error": None}
    return [(i, [rows[i, k] for k in range(len(clips))]) for i, clips in files]


def format_summary(summary: dict, out_dir: str) -> str:
    r = summary["this_run"]
    rate = "" if summary["kept_rate"] is None else f" ({summary['kept_rate']:.0%})"
    lines = [f"{summary['n_kept']} of {summary['n_clips']} clips kept{rate} in {out_dir}; "
             f"{summary['n_rejected']} rejected, {summary['n_errors']} unreadable or failed "
             f"(reasons: {os.path.join(out_dir, MANIFEST)})",
             f"this run: {r['n_clips']} clips scored, {r['files_skipped']} files already in the manifest skipped"
             + (f", {r['clips_per_s']:.1f} clips/s with {r['workers']} {r['backend']} workers" if r["clips_per_s"] else "")]
    return "\n".join(lines)
