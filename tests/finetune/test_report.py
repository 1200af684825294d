"""rlpf.finetune.report: a video that cannot be made is recorded in the report, never raised (real failures)."""
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def ant_clip():
    from rlpf.policies.scripted import AntGait
    from rlpf.data.simulate import simulate

    return simulate("ant", AntGait(), 12, seed=0, prompt="walk forward")


def test_an_unwritable_videos_directory_is_recorded_not_raised(tmp_path, ant_clip, capsys):
    from rlpf.policies.pd_tracker import PDTracker
    from rlpf.finetune.report import format_markdown, render_videos

    (tmp_path / "videos").write_text("a file where RUN/videos should be")  # makedirs fails, also as root
    errors = []
    assert render_videos(str(tmp_path), "base", [ant_clip], PDTracker("ant"), 1, errors=errors) == []
    (entry,) = errors
    assert entry["video"] == os.path.join("videos", "base_walk_forward.mp4") and "Error" in entry["error"]
    assert "videos skipped" in capsys.readouterr().err
    md = format_markdown({"before": {}, "after": {}, "video_errors": errors})
    assert "videos/base_walk_forward.mp4" in md and "not made" in md


def test_no_opengl_backend_is_recorded_not_raised(tmp_path):
    """MUJOCO_GL=glfw without a display cannot make a GL context: the videos are an entry, not a crash."""
    if os.environ.get("DISPLAY") or sys.platform != "linux":
        pytest.skip("a display is available: glfw would render")
    code = ("import json, sys\n"
            "from rlpf.policies.pd_tracker import PDTracker\n"
            "from rlpf.policies.scripted import AntGait\n"
            "from rlpf.finetune.report import render_videos\n"
            "from rlpf.data.simulate import simulate\n"
            "clip = simulate('ant', AntGait(), 8, seed=0, prompt='walk forward')\n"
            "errors = []\n"
            "print(json.dumps([render_videos(sys.argv[1], 'base', [clip], PDTracker('ant'), 1, errors=errors), errors]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MUJOCO_GL"] = "glfw"
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    import json

    videos, errors = json.loads(p.stdout.strip().splitlines()[-1])
    assert videos == [] and len(errors) == 1 and "RenderError" in errors[0]["error"]
    assert not os.path.exists(tmp_path / "videos" / "base_walk_forward.mp4")


@pytest.mark.slow
def test_rlpf_train_writes_its_report_when_no_video_can_be_made(tmp_path_factory):
    """`rlpf train` end to end (method=base: evaluation and videos, no fine-tuning) into a run whose
    videos/ is a regular file: the run finishes, report.json and report.md carry video_errors."""
    import json

    from test_rlpf_train import rlpf_overrides
    from test_pretrain import TINY

    from rlpf.cli import main
    from rlpf.core.config import load_config
    from rlpf.worldmodel.pretrain import PretrainConfig, pretrain

    import yaml

    root = tmp_path_factory.mktemp("rlpf_report")
    overrides = TINY + [f"data={root / 'data'}"]
    pretrain(load_config(PretrainConfig, None, overrides), str(root / "base"), progress=False)
    (root / "pretrain.yaml").write_text(yaml.safe_dump({o.split("=", 1)[0]: yaml.safe_load(o.split("=", 1)[1])
                                                        for o in overrides}))
    run = root / "run"
    run.mkdir()
    (run / "videos").write_text("not a directory")
    args = rlpf_overrides(root, ["method=base", "videos=1", "eval_per_prompt=1", "workers=0"])
    assert main(["train", "--out", str(run), "--quiet", *args]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["videos"] == [] and len(report["video_errors"]) == 1
    assert report["video_errors"][0]["video"].startswith("videos" + os.sep)
    assert "not made" in (run / "report.md").read_text()
