"""Dataset curation (`rlpf score DIR --filter plausible --out-dir KEPT/`): kept clips are exactly the
passing ones, one manifest row per clip with its reasons, a rerun skips what the manifest holds, a
broken file is a row and the rest go on, an output inside the inputs is refused; same on Ray."""
from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np
import pytest

import rlpf
from rlpf.cli import main
from rlpf.cli.score import EXAMPLES_DIR
from rlpf.core.clips import save_clips
from rlpf.data.simulate import simulate
from rlpf.judge.curation import MANIFEST, SETTINGS, CurationError, curate
from rlpf.judge.scoring import ScoreConfig
from rlpf.policies.scripted import AntGait

EXAMPLES = sorted(glob.glob(os.path.join(EXAMPLES_DIR, "*.npz")))


def rows(out_dir) -> list[dict]:
    with open(os.path.join(out_dir, MANIFEST)) as f:
        return [json.loads(line) for line in f]


def kept_files(out_dir) -> list[str]:
    return sorted(os.path.relpath(p, out_dir) for p in glob.glob(os.path.join(str(out_dir), "**", "*.npz"), recursive=True))


@pytest.fixture(scope="module")
def examples_curated(tmp_path_factory):
    out = tmp_path_factory.mktemp("kept")
    code = main(["score", EXAMPLES_DIR, "--filter", "plausible", "--out-dir", str(out), "--quiet", "--workers", "2",
                 "--chunk-files", "3"])
    return out, code


def test_kept_clips_are_exactly_the_plausible_ones(examples_curated):
    out, code = examples_curated
    assert code == 0
    report = rlpf.score(EXAMPLES)  # the plain report of the same files
    verdict = {os.path.realpath(c.source): c for c in report.clips}
    assert len(verdict) == len(EXAMPLES) and not report.errors
    expected = sorted(os.path.basename(s) for s, c in verdict.items() if c.plausible)
    assert 0 < len(expected) < len(EXAMPLES)  # the examples hold both kinds
    assert kept_files(out) == expected
    for name in expected:  # copied as they were, byte for byte
        assert open(os.path.join(out, name), "rb").read() == open(os.path.join(EXAMPLES_DIR, name), "rb").read()
    manifest = rows(out)
    assert sorted(r["file"] for r in manifest) == sorted(verdict)  # one row per scored clip
    for r in manifest:
        c = verdict[r["file"]]
        assert r["kept"] == c.plausible and r["error"] is None and r["score"] == c.score and r["world"] == c.world
        assert r["out"] == (os.path.basename(r["file"]) if c.plausible else None)
        # reasons: exactly the failing terms, with their values
        assert r["reasons"] == {t: c.terms[t] for t in c.violations}
        assert bool(r["reasons"]) != r["kept"]
    summary = json.loads((out / SETTINGS).read_text())["summary"]
    assert summary["n_kept"] == len(expected) and summary["n_clips"] == len(EXAMPLES)


def _ant_dir(root, n, start=0):
    root.mkdir(exist_ok=True)
    for i in range(start, start + n):
        save_clips(str(root / f"walk_{i}.npz"), simulate("ant", AntGait(), 30, seed=i, prompt="walk"))
    return root


def test_a_rerun_skips_the_clips_already_in_the_manifest(tmp_path):
    src, out = _ant_dir(tmp_path / "src", 3), tmp_path / "kept"
    cfg = ScoreConfig()
    first = curate([str(src)], str(out), cfg, workers=1, chunk_files=2)
    assert first["this_run"]["n_clips"] == 3 and first["this_run"]["files_skipped"] == 0
    before = rows(out)
    again = curate([str(src)], str(out), cfg, workers=1)
    assert again["this_run"]["n_clips"] == 0 and again["this_run"]["files_skipped"] == 3
    assert rows(out) == before
    # new files and a run killed mid-line: only the new files are scored, the partial line is dropped
    _ant_dir(src, 2, start=3)
    with open(out / MANIFEST, "a") as f:
        f.write('{"source": "half a row')
    third = curate([str(src)], str(out), cfg, workers=1)
    assert third["this_run"]["n_clips"] == 2 and third["this_run"]["files_skipped"] == 3
    after = rows(out)
    assert after[:3] == before and len(after) == 5
    assert sorted(os.path.basename(r["file"]) for r in after) == [f"walk_{i}.npz" for i in range(5)]
    assert third["n_clips"] == 5  # the totals count the earlier runs
    assert sorted(r["out"] for r in after if r["kept"]) == kept_files(out)


def test_a_broken_file_is_a_rejected_row_and_the_rest_are_scored(tmp_path):
    src = _ant_dir(tmp_path / "src", 2)
    (src / "garbage.npz").write_bytes(b"not a zip archive \x00\xff" * 10)
    np.savez(src / "wide.npz", qpos=np.zeros((30, 10)), fps=20.0, world=np.str_("ant"))
    out = tmp_path / "kept"
    assert main(["score", str(src), "--filter", "plausible", "--out-dir", str(out), "--quiet"]) == 1
    by_name = {os.path.basename(r["source"]): r for r in rows(out)}
    assert set(by_name) == {"walk_0.npz", "walk_1.npz", "garbage.npz", "wide.npz"}
    assert "unreadable" in by_name["garbage.npz"]["error"] and not by_name["garbage.npz"]["kept"]
    assert "width 10" in by_name["wide.npz"]["error"] and not by_name["wide.npz"]["kept"]
    for name in ("walk_0.npz", "walk_1.npz"):
        assert by_name[name]["error"] is None and by_name[name]["terms"]
    assert kept_files(out) == sorted(r["out"] for r in by_name.values() if r["kept"])
    # the broken files are recorded: a rerun does not retry them
    assert main(["score", str(src), "--filter", "plausible", "--out-dir", str(out), "--quiet"]) == 0
    assert len(rows(out)) == 4


def test_batch_file_clips_are_kept_one_file_each(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    clips = [simulate("ant", AntGait(), 30, seed=i, prompt="walk") for i in range(2)]
    clips[1].qpos[:, 2] += 0.5  # floats half a metre: implausible
    save_clips(str(src / "batch.npz"), clips)
    out = tmp_path / "kept"
    curate([str(src)], str(out), ScoreConfig(), workers=1)
    manifest = rows(out)
    assert [r["source"].rsplit(os.sep, 1)[-1] for r in manifest] == ["batch.npz#0", "batch.npz#1"]
    assert [r["kept"] for r in manifest] == [True, False] and "float_m" in manifest[1]["reasons"]
    assert kept_files(out) == ["batch_0.npz"]
    kept = rlpf.load_clips(str(out / "batch_0.npz"))
    assert len(kept) == 1 and np.array_equal(kept[0].qpos, clips[0].qpos) and kept[0].prompt == "walk"


@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_out_dir_in_or_over_an_input_directory_is_refused(tmp_path, where, capsys):
    src = _ant_dir(tmp_path / "src", 1)
    out = {"same": src, "inside": src / "kept", "holds": tmp_path}[where]
    assert main(["score", str(src), "--filter", "plausible", "--out-dir", str(out), "--quiet"]) == 2
    assert "--out-dir" in capsys.readouterr().err
    assert not (src / MANIFEST).exists() and not (src / "kept").exists()
    with pytest.raises(CurationError):
        curate([str(src)], str(out))


def test_other_settings_on_the_same_out_dir_are_refused(tmp_path, capsys):
    src, out = _ant_dir(tmp_path / "src", 1), tmp_path / "kept"
    assert main(["score", str(src), "--filter", "plausible", "--out-dir", str(out), "--quiet"]) == 0
    assert main(["score", str(src), "--filter", "plausible", "--out-dir", str(out), "--quiet",
                 "thresholds.skate_mps=0.01"]) == 2
    assert "other settings" in capsys.readouterr().err and len(rows(out)) == 1


def test_filter_arguments_are_checked(tmp_path, capsys):
    src = _ant_dir(tmp_path / "src", 1)
    out = str(tmp_path / "kept")
    for argv, words in ((["--filter", "plausible"], "go together"), (["--out-dir", out], "go together"),
                        (["--filter", "nice", "--out-dir", out], "unknown --filter"),
                        (["--filter", "tracked", "--out-dir", out], "needs a tracker"),
                        (["--filter", "plausible", "--out-dir", out, "--out", str(tmp_path / "r.json")], "--out")):
        assert main(["score", str(src), "--quiet", *argv]) == 2, argv
        assert words in capsys.readouterr().err, argv


def test_tracked_filter_keeps_what_the_tracker_performs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(EXAMPLES_DIR, "ant_valid.npz"), src)
    shutil.copy(os.path.join(EXAMPLES_DIR, "ant_float.npz"), src)
    out = tmp_path / "kept"
    curate([str(src)], str(out), ScoreConfig(trackers=["pd"]), "tracked", workers=1)
    report = rlpf.score([str(src)], trackers=["pd"])
    tracked = {os.path.basename(c.source): c.terms["tracking_success"] >= 1 for c in report.clips}
    by_name = {os.path.basename(r["source"]): r for r in rows(out)}
    assert {k: r["kept"] for k, r in by_name.items()} == tracked
    for r in by_name.values():
        assert set(r["reasons"]) == (set() if r["kept"] else {"tracking_success", "tracking_error_m"})


def test_same_manifest_on_ray(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        manifests = {}
        for backend in ("local", "ray"):
            out = tmp_path / backend
            assert main(["score", *EXAMPLES[:5], "--filter", "plausible", "--out-dir", str(out), "--quiet",
                         "--backend", backend, "--tracker", "pd", "--chunk-files", "2"]) == 0
            manifests[backend] = rows(out)
    finally:
        ray.shutdown()
    assert len(manifests["local"]) == 5 and manifests["ray"] == manifests["local"]
    assert kept_files(tmp_path / "ray") == kept_files(tmp_path / "local")


def crash_on_prompt(clips, **_):
    """A reward plugin that kills its worker process on a clip prompted 'crash' (as a native crash would)."""
    if any(c.prompt == "crash" for c in clips):
        os._exit(1)
    return [0.0 for _ in clips]


def test_a_file_that_kills_its_worker_is_recorded_and_the_rest_of_its_chunk_scored(tmp_path):
    src = _ant_dir(tmp_path / "src", 3)
    save_clips(str(src / "walk_1_crash.npz"), simulate("ant", AntGait(), 30, seed=9, prompt="crash"))
    out = tmp_path / "kept"
    cfg = ScoreConfig(weights={"test_curation:crash_on_prompt": 0.0})
    summary = curate([str(src)], str(out), cfg, workers=1, chunk_files=4)  # all four files in one chunk
    by_name = {os.path.basename(r["source"]): r for r in rows(out)}
    assert len(by_name) == 4 and summary["n_errors"] == 1
    assert "worker died" in by_name["walk_1_crash.npz"]["error"] and not by_name["walk_1_crash.npz"]["kept"]
    for name in ("walk_0.npz", "walk_1.npz", "walk_2.npz"):
        assert by_name[name]["error"] is None and "test_curation:crash_on_prompt" in by_name[name]["terms"]
