"""rlpf.viz.contract: the video contract's camera keeps root height visible; floor repaint; randomization."""
import numpy as np
import pytest

from rlpf.viz.contract import Randomization, contract_for


@pytest.fixture(scope="module")
def renderer(no_rendering):
    from rlpf.viz.render import RenderError

    try:
        r = contract_for("ant", 64).renderer()
    except RenderError as e:
        no_rendering(e)
    yield r
    r.close()


def _torso_row(frame):
    f = frame.astype(int)   # the tan torso: red > green > blue, well apart
    mask = (f[..., 0] > 150) & (f[..., 0] - f[..., 2] > 60) & (f[..., 1] - f[..., 2] > 20) & (f[..., 0] - f[..., 1] < 70)
    return np.nonzero(mask)[0].mean()


def test_the_camera_follows_x_y_only(renderer):
    from rlpf.envs.worlds import compile_world

    q = compile_world("ant").model.qpos0.copy()
    up, moved = q.copy(), q.copy()
    up[2] += 0.2
    moved[:2] += (3.0, -2.0)
    a, b, c = renderer.frames(np.stack([q, up, moved]))
    assert _torso_row(b) < _torso_row(a) - 2          # a higher root is higher in the frame
    assert abs(_torso_row(c) - _torso_row(a)) < 0.5   # x, y are followed: the body stays put...
    assert np.abs(c.astype(int) - a.astype(int)).mean() > 3   # ...and the floor moves under it


def test_floor_colours_and_randomization_stay_inside_the_contract(renderer):
    from rlpf.envs.worlds import compile_world

    q = compile_world("ant").model.qpos0[None]
    before = renderer.frames(q)[0]
    drawn = Randomization().apply(renderer, contract_for("ant", 64), np.random.default_rng(0))
    after = renderer.frames(q)[0]
    assert abs(drawn["elevation"] + 35) <= 1.5 and abs(drawn["azimuth"] - 90) <= 1.5
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 2
    renderer.set_floor_colours((0, 0, 0), (255, 0, 0))
    red = renderer.frames(q)[0].astype(int)
    assert ((red[-5:, :, 0] - red[-5:, :, 1]) > 60).mean() > 0.2    # the floor at the bottom is red now


def test_other_worlds_get_a_default_contract_and_sizes_are_checked():
    from rlpf.viz.render import RenderError

    assert contract_for("humanoid").lookat_z is not None and contract_for("pusher").lookat_z is None
    with pytest.raises(RenderError, match="16-1024"):
        contract_for("ant", 8)
