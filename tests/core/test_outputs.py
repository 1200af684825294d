"""Outputs: checked before the work, never over an input, through symlinks, finished work never lost."""
import json
import os
import shutil

import numpy as np
import pytest

from rlpf.cli import main
from rlpf.core.errors import OutputError
from rlpf.core.outputs import (EXIT_WRITE_FAILED, check_output_dir, check_output_file, write_dir, write_json,
                               write_or_rescue)

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "rlpf", "examples")


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "victim.npz"
    shutil.copy(os.path.join(EXAMPLES, "ant_float.npz"), path)
    return path


def test_score_refuses_to_write_its_report_over_an_input(clip, capsys):
    before = clip.read_bytes()
    assert main(["score", str(clip), "--out", str(clip), "--quiet"]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert clip.read_bytes() == before
    # an input given as a directory protects the files inside it too
    assert main(["score", str(clip.parent), "--out", str(clip), "--quiet"]) == 2
    assert clip.read_bytes() == before


def test_a_symlinked_output_is_written_through_and_stays_a_link(clip, tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("{}")
    link.symlink_to(target)
    assert main(["score", str(clip), "--out", str(link), "--quiet"]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["clips"][0]["source"] == str(clip)
    # a link to an input is the input
    sneaky = tmp_path / "sneaky.json"
    sneaky.symlink_to(clip)
    before = clip.read_bytes()
    assert main(["score", str(clip), "--out", str(sneaky), "--quiet"]) == 2
    assert clip.read_bytes() == before


def test_non_regular_and_unwritable_outputs_are_refused_before_scoring(clip, tmp_path, capsys):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = {str(fifo): "not a regular file", str(tmp_path): "is a directory",
             str(blocker / "report.json"): "not a directory", "/dev/null": "not a regular file"}
    for out, why in cases.items():
        assert main(["score", str(clip), "--out", out, "--quiet"]) == 2, out
        err = capsys.readouterr().err
        assert why in err and out in err, err
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")  # the device is still a device


def test_a_report_that_cannot_be_written_at_the_end_is_rescued_with_exit_3(clip, tmp_path, capsys, monkeypatch):
    """The output directory disappears while scoring (a plugin replaces it by a file): the report goes to
    a temporary file named on stderr, and the exit code says 'could not write' (3), not 'bad input' (1)."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setenv("RLPF_TEST_SABOTAGE", str(out_dir))
    monkeypatch.syspath_prepend(os.path.dirname(os.path.dirname(__file__)))  # tests/: rlpf_plugins
    code = main(["score", str(clip), "--out", str(out_dir / "r.json"), "--quiet",
                 "weights.rlpf_plugins:sabotage_output=0"])
    assert code == EXIT_WRITE_FAILED
    err = capsys.readouterr().err
    assert "could not write" in err
    rescue = err.split("the report is saved in ")[1].split()[0]
    report = json.loads(open(rescue).read())
    os.unlink(rescue)
    assert report["clips"][0]["source"] == str(clip) and not report["errors"]


def test_track_checks_its_video_directory_before_tracking(clip, tmp_path, capsys):
    not_a_dir = tmp_path / "videos"
    not_a_dir.write_text("x")
    assert main(["track", str(clip), "--video", str(not_a_dir), "--quiet"]) == 2
    assert "--video" in capsys.readouterr().err
    assert main(["track", str(clip), "--out", str(clip), "--quiet"]) == 2
    assert np.load(clip)["qpos"].ndim == 2  # still the clip


def test_unit_checks(tmp_path):
    f = tmp_path / "x.json"
    assert check_output_file(str(f)) == str(f.resolve())
    nested = tmp_path / "new" / "deeper" / "r.json"
    check_output_file(str(nested))  # missing parents are fine (created)
    f.write_text("{}")
    with pytest.raises(OutputError, match="not a directory"):
        check_output_dir(str(f))
    write_json(str(f), {"a": 1})
    assert json.loads(f.read_text()) == {"a": 1}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary left behind
    assert write_or_rescue(str(f), {"b": 2}, "test") and json.loads(f.read_text()) == {"b": 2}


def test_write_dir_replaces_a_directory_whole_and_a_failed_fill_keeps_the_old_one(tmp_path):
    target = tmp_path / "model"

    def fill(version):
        def write(tmp):
            with open(os.path.join(tmp, "weights"), "w") as f:
                f.write(version)
        return write

    write_dir(str(target), fill("v1"))
    write_dir(str(target) + "/", fill("v2"))       # a trailing slash names the same directory
    assert (target / "weights").read_text() == "v2"

    def broken(tmp):
        fill("half")(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_dir(str(target), broken)
    assert (target / "weights").read_text() == "v2"    # the previous save is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]   # no .tmp / .old left behind
