"""Videos from the installed ``rlpf`` command, in a fresh process whose environment does not set
MUJOCO_GL: the command's own headless default must be in place before MuJoCo is first imported."""
import os
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "rlpf", "examples")


def test_rlpf_track_writes_a_video_without_mujoco_gl_set(tmp_path, no_rendering):
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    p = subprocess.run([sys.executable, "-m", "rlpf.cli", "track", os.path.join(EXAMPLES, "ant_valid.npz"),
                        "--video", str(tmp_path / "v"), "--max-videos", "1", "--size", "64", "--quiet"],
                       env=env, capture_output=True, text=True, timeout=300)
    if "OpenGL" in p.stderr and "cannot create an offscreen OpenGL context" in p.stderr and \
            "platform library has not been loaded" not in p.stderr:
        no_rendering(p.stderr.strip().splitlines()[-1])  # no EGL on this machine at all
    assert p.returncode == 0, p.stderr[-2000:]
    assert [f for f in os.listdir(tmp_path / "v") if f.endswith(".mp4")]
