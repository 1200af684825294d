"""Meta-World worlds: the declared model is exactly the one gym.make("Meta-World/MT1") steps."""
import dataclasses
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from rlpf.core.errors import RLPFError
from rlpf.envs.worlds import METAWORLD_TASKS, UnknownWorldError, compile_world, get_world

pytest.importorskip("metaworld")
from rlpf.envs.metaworld import MetaWorldError, make_env, placed, placements_of, task_of  # noqa: E402

TASKS = list(METAWORLD_TASKS)


def _model_arrays(m: mujoco.MjModel) -> dict:
    out = {}
    for k in dir(m):
        if k.startswith("_"):
            continue
        try:
            v = getattr(m, k)
        except Exception:
            continue
        if isinstance(v, np.ndarray):
            out[k] = v
    return out


@pytest.mark.parametrize("task", TASKS)
def test_world_is_the_envs_model(task):
    """nq, joint names and body masses, then every model array (the env reset to our placement;
    NaN equals NaN: the peg box's mesh has 4 degenerate faces whose normals MuJoCo leaves NaN)."""
    env = make_env(f"metaworld/{task}", seed=0)
    try:
        env.reset(seed=0)
        em = env.unwrapped.model
        cw = compile_world(f"metaworld/{task}")
        m = cw.model
        assert m.nq == em.nq and m.nv == em.nv and m.nu == em.nu
        assert [m.joint(j).name for j in range(m.njnt)] == [em.joint(j).name for j in range(em.njnt)]
        np.testing.assert_array_equal(m.body_mass, em.body_mass)
        # the episode's own placement: then the whole model is the env's, goal site aside (no physics)
        pm = compile_world(placed(f"metaworld/{task}", env)).model
        ours, theirs = _model_arrays(pm), _model_arrays(em)
        differ = [k for k in ours if k in theirs and k != "site_pos"
                  and (ours[k].shape != theirs[k].shape or not np.array_equal(ours[k], theirs[k], equal_nan=True))]
        assert differ == []
        np.testing.assert_array_equal(pm.eq_data, em.eq_data)
    finally:
        env.close()


@pytest.mark.parametrize("task", ["pick-place-v3", "drawer-open-v3"])
def test_env_steps_reproduce_in_the_world(task):
    """qpos recorded after env.step is what the world's model reaches from the same state and control."""
    env = make_env(f"metaworld/{task}", seed=1)
    try:
        env.reset(seed=1)
        u = env.unwrapped
        m = compile_world(placed(f"metaworld/{task}", env)).model
        d = mujoco.MjData(m)
        rng = np.random.default_rng(0)
        for _ in range(5):
            env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        d.qpos[:], d.qvel[:], d.act[:] = u.data.qpos, u.data.qvel, u.data.act
        d.mocap_pos[:], d.mocap_quat[:], d.ctrl[:] = u.data.mocap_pos, u.data.mocap_quat, u.data.ctrl
        d.qacc_warmstart[:] = u.data.qacc_warmstart
        env.step(np.zeros(4, np.float32))
        d.ctrl[:] = u.data.ctrl
        d.mocap_pos[:], d.mocap_quat[:] = u.data.mocap_pos, u.data.mocap_quat
        for _ in range(get_world(f"metaworld/{task}").frame_skip):
            mujoco.mj_step(m, d)
        np.testing.assert_allclose(d.qpos, u.data.qpos, atol=1e-9)
    finally:
        env.close()


def test_declared_facts():
    cw = compile_world("metaworld/drawer-open-v3")
    m = cw.model
    assert cw.root_body is None and cw.floor_geom is None
    assert [m.joint(j).name for j in cw.articulation_joints] == ["goal_slidey"]
    assert m.body(int(cw.articulation_bodies[0])).name == "drawer_link"
    assert list(cw.articulation_qpos) == [9]
    assert m.body(int(cw.hand_body)).name == "hand" and m.body_mocapid[cw.mocap_body] == 0
    assert [m.joint(int(j)).name for j in cw.gripper_joints] == ["r_close", "l_close"]
    # the table is a support, never robot; fixtures (the cabinet) are neither robot nor support
    table = {g for g in range(m.ngeom) if m.geom_bodyid[g] == m.body("tablelink").id}
    assert set(cw.support_geoms) <= table and len(cw.support_geoms) == 1
    assert not set(cw.robot_geoms) & (table | set(cw.fixture_geoms) | set(cw.articulation_geoms))
    pp = compile_world("metaworld/pick-place-v3")
    assert pp.model.body(int(pp.object_bodies[0])).name == "obj" and pp.nq == 16
    assert len(pp.articulation_joints) == 0
    assert task_of("metaworld/push-v3") == "push-v3"


def test_placement_moves_the_fixture_only():
    w = get_world("metaworld/drawer-open-v3")
    moved = dataclasses.replace(w, placements=(("drawer", (0.1, 0.9, 0.0)),))
    assert compile_world(moved).model.body("drawer").pos[0] == pytest.approx(0.1)
    assert compile_world(w).model.body("drawer").pos[0] == pytest.approx(0.0)
    with pytest.raises(UnknownWorldError, match="nothere"):
        compile_world(dataclasses.replace(w, placements=(("nothere", (0, 0, 0)),)))


def test_unknown_task_names_it_and_lists_tasks():
    with pytest.raises(RLPFError) as e:
        get_world("metaworld/no-such-task-v3")
    assert "metaworld/no-such-task-v3" in str(e.value) and "metaworld/drawer-open-v3" in str(e.value)
    with pytest.raises(MetaWorldError, match="not a Meta-World world"):
        task_of("ant")


def test_placements_of_reads_the_env():
    env = make_env("metaworld/door-open-v3", seed=3)
    try:
        env.reset(seed=3)
        (name, pos), = placements_of("metaworld/door-open-v3", env)
        assert name == "door" and np.allclose(pos, env.unwrapped.model.body("door").pos)
    finally:
        env.close()


def test_importing_rlpf_worlds_does_not_import_metaworld():
    code = "import rlpf, rlpf.envs.worlds as w; w.compile_world('metaworld/push-v3'); import sys; print('metaworld' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
