"""rlpf.lifting.root_height: the ant's root height solved from its torso sphere in contract videos."""
import numpy as np
import pytest

from rlpf.data import corrupt
from rlpf.lifting.frames import mp4_roundtrip


@pytest.fixture(scope="module")
def setup(no_rendering):
    from rlpf.policies.scripted import AntGait

    from rlpf.data.simulate import simulate
    from rlpf.lifting.root_height import root_sphere_for
    from rlpf.viz.contract import contract_for
    from rlpf.viz.render import RenderError

    contract = contract_for("ant")
    try:
        r = contract.renderer()
    except RenderError as e:
        no_rendering(e)
    clip = simulate("ant", AntGait(), 12, seed=4)
    yield r, clip, root_sphere_for(contract)
    r.close()


def _heights(setup, clip, tmp_path):
    r, _, sphere = setup
    frames = mp4_roundtrip(r.frames(clip.qpos), clip.fps, str(tmp_path))   # as rlpf render writes them
    return sphere.track(frames)[0], frames


def test_the_ant_root_sphere_comes_from_its_model():
    from rlpf.lifting.root_height import root_sphere_for
    from rlpf.viz.contract import contract_for

    sphere = root_sphere_for(contract_for("ant"))
    assert sphere.radius == pytest.approx(0.25) and sphere.offset == 0.0
    assert abs(sphere.hue - 30.0) < 1.0            # the MJCF's tan (0.8, 0.6, 0.4)


def test_a_worlds_root_without_a_sphere_gives_none():
    from rlpf.lifting.root_height import root_sphere_for
    from rlpf.viz.contract import contract_for

    assert root_sphere_for(contract_for("pusher")) is None     # fixed base: no root


def test_walking_floating_and_sunk_heights_are_read_to_a_centimetre(setup, tmp_path):
    _, clip, _ = setup
    for moved in (clip, corrupt.float_up(clip, 0.1), corrupt.sink(clip, 0.08)):
        z, _ = _heights(setup, moved, tmp_path)
        assert np.isfinite(z).all(), moved.source
        err = np.abs(z - moved.qpos[:, 2])
        assert err.mean() < 0.01 and err.max() < 0.025, (moved.source, err.mean(), err.max())


def test_the_edge_row_and_the_solution_invert_each_other(setup):
    _, _, sphere = setup
    for z in (0.2, 0.55, 1.1):
        row = sphere.edge_row(z, 128)
        back = sphere._solve(np.array([row]), np.array([63.5]), 128)[0]
        assert back == pytest.approx(z, abs=1e-4)
        assert sphere.edge_row(z + 0.05, 128) < row          # higher root: higher in the frame


def test_frames_without_the_sphere_give_nan_not_a_guess(setup, tmp_path):
    _, _, sphere = setup
    z, spread, cols = sphere.estimate(np.full((128, 128, 3), 90, np.uint8))   # grey: no tan pixels
    assert np.isnan(z) and cols == 0
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    assert np.isnan(sphere.estimate(noise)[0])                                  # specks are not an arc
    _, clip, _ = setup
    _, frames = _heights(setup, clip, tmp_path)
    covered = frames[0].copy()
    covered[:64] = 90                                     # the torso's top half hidden: no arc to fit
    assert np.isnan(sphere.estimate(covered)[0])
