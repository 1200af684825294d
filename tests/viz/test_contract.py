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


def _colour_pixels(frame, rgb, tol=60):
    return int((np.abs(frame.astype(int) - np.array(rgb) * 255).max(axis=-1) < tol).sum())


def test_torso_markers_render_and_turn_with_the_torso_and_leave_the_world_alone(renderer):
    """The spots are drawn (cyan at the torso's +x), move when the torso yaws, and the world's own
    model - the physics the scorer and trackers use - has no marker geoms."""
    import mujoco

    from rlpf.envs.worlds import compile_world
    from rlpf.viz.contract import ANT_MARKERS

    cw = compile_world("ant")
    assert mujoco.mj_name2id(cw.model, mujoco.mjtObj.mjOBJ_GEOM, "contract_front") < 0
    assert mujoco.mj_name2id(renderer.model, mujoco.mjtObj.mjOBJ_GEOM, "contract_front") >= 0
    assert renderer.model.nq == cw.model.nq and renderer.model.ngeom == cw.model.ngeom + len(ANT_MARKERS)
    front = next(m for m in ANT_MARKERS if m.name == "contract_front")
    q = cw.model.qpos0.copy()
    facing_camera = q.copy()                       # yaw -90 deg: the torso's +x looks at the camera (-y)
    facing_camera[3:7] = [np.cos(-np.pi / 4), 0, 0, np.sin(-np.pi / 4)]
    away = q.copy()                                # yaw +90 deg: the front spot is behind the sphere
    away[3:7] = [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]
    a, b = renderer.frames(np.stack([facing_camera, away]))
    assert _colour_pixels(a, front.rgba[:3]) >= 3
    assert _colour_pixels(b, front.rgba[:3]) < _colour_pixels(a, front.rgba[:3]) / 2


def test_a_marker_on_a_missing_body_or_of_an_unknown_type_is_a_clear_error():
    from rlpf.viz.contract import Marker
    from rlpf.viz.render import ClipRenderer, RenderError

    with pytest.raises(RenderError, match="no body 'tail'"):
        ClipRenderer("ant", 32, 32, markers=(Marker("m", "tail", "sphere", (0.05,), (1, 0, 0, 1)),))
    with pytest.raises(RenderError, match="type must be one of"):
        ClipRenderer("ant", 32, 32, markers=(Marker("m", "torso", "cone", (0.05,), (1, 0, 0, 1)),))
