"""rlpf.lifting.odometry: the root's horizontal motion read back from the floor of contract videos."""
import numpy as np
import pytest

from rlpf.data import corrupt
from rlpf.lifting.frames import mp4_roundtrip


@pytest.fixture(scope="module")
def setup(no_rendering):
    from rlpf.policies.scripted import AntGait

    from rlpf.data.simulate import simulate
    from rlpf.lifting.odometry import odometry_for
    from rlpf.viz.contract import contract_for
    from rlpf.viz.render import RenderError

    contract = contract_for("ant")
    try:
        r = contract.renderer()
    except RenderError as e:
        no_rendering(e)
    clip = simulate("ant", AntGait(), 16, seed=3)
    yield r, clip, odometry_for(contract)
    r.close()


def _track(setup, clip, tmp_path):
    r, _, odo = setup
    frames = mp4_roundtrip(r.frames(clip.qpos), clip.fps, str(tmp_path))   # as rlpf render writes them
    return odo.track(frames)


def test_walk_skate_and_teleport_are_read_from_the_floor(setup, tmp_path):
    _, clip, _ = setup
    for moved in (clip, corrupt.skate(clip, 0.6), corrupt.teleport(clip, 0.5)):
        xy, resid = _track(setup, moved, tmp_path)
        true = moved.qpos[:, :2] - moved.qpos[0, :2]
        step_err = np.abs(np.diff(xy, axis=0) - np.diff(true, axis=0))
        assert step_err.max() < 0.02, (moved.source, step_err.max())     # < 2 cm per frame, teleport included
        assert np.abs(xy[-1] - true[-1]).max() < 0.05
        assert resid[0] == 0 and np.isfinite(resid).all()


def test_frames_that_are_not_square_are_refused(setup):
    from rlpf.lifting.odometry import OdometryError

    _, _, odo = setup
    with pytest.raises(OdometryError, match="square"):
        odo.track(np.zeros((3, 32, 48, 3), np.uint8))
