"""rlpf.score, the Python API behind `rlpf score`: the same report, the same validation, inputs untouched."""
import json
import os
import subprocess
import sys

import numpy as np

import rlpf
from rlpf.cli import main

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "rlpf", "examples")


def test_score_to_json_is_exactly_the_cli_report(tmp_path):
    out = tmp_path / "r.json"
    assert main(["score", EXAMPLES, "--out", str(out), "--quiet", "weights.skate_mps=-20"]) == 0
    report = rlpf.score([EXAMPLES], weights={"skate_mps": -20})
    assert report.to_json() == json.loads(out.read_text())
    assert isinstance(report, rlpf.ScoreReport) and all(isinstance(c, rlpf.ClipScore) for c in report.clips)
    float_ant = next(c for c in report.clips if c.source.endswith("ant_float.npz"))
    assert not float_ant.plausible and "float_m" in float_ant.violations


def test_clips_in_memory_are_validated_as_files_are_and_never_changed(tmp_path):
    (good,) = rlpf.load_clips(os.path.join(EXAMPLES, "ant_valid.npz"))
    skewed = rlpf.Clip(qpos=good.qpos.copy(), fps=good.fps, world="ant", source="skewed")
    skewed.qpos[:, 3:7] *= 2.0  # a quaternion of norm 2: validation normalises a copy, not this array
    before = skewed.qpos.copy()
    broken = rlpf.Clip(qpos=good.qpos.copy(), fps=good.fps, world="ant", source="broken")
    broken.qpos[5, 2] = np.nan
    report = rlpf.score([good, skewed, broken])
    assert np.array_equal(skewed.qpos, before)
    assert [c.source for c in report.clips] == [good.source, "skewed"]
    assert report.clips[0].terms == report.clips[1].terms  # the same motion once normalised
    # the file with the same defect gets the same message from the CLI's path
    path = tmp_path / "broken.npz"
    np.savez(path, qpos=broken.qpos, fps=good.fps, world=np.str_("ant"))
    from_file = rlpf.score([str(path)]).errors[0].error
    assert report.errors[0].error == from_file and "non-finite" in from_file


def test_import_rlpf_and_scoring_stay_light():
    code = ("import sys, rlpf; assert 'mujoco' not in sys.modules and 'torch' not in sys.modules\n"
            f"rlpf.score([{os.path.join(EXAMPLES, 'ant_valid.npz')!r}])\n"
            "print(sorted(m for m in ('torch', 'trl', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
