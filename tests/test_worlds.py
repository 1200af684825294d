"""Built-in worlds match gymnasium's models; any MJCF file works as a world."""
import mujoco
import numpy as np
import pytest

from rlpf import corrupt
from rlpf.clips import Clip
from rlpf.envs.worlds import BUILTIN_WORLDS, compile_world, get_world
from rlpf.scoring import ScoreConfig, score_clips

ROBOT = """
<mujoco>
  <option timestep="0.005"/>
  <worldbody>
    <geom name="ground" type="plane" size="5 5 0.1"/>
    <body name="bot" pos="0 0 0.3">
      <freejoint name="base"/>
      <geom type="box" size="0.15 0.1 0.05" mass="2"/>
      <body name="leg" pos="0.15 0 0">
        <joint name="knee" type="hinge" axis="0 1 0" range="-1 1" damping="0.5"/>
        <geom name="shin" type="capsule" fromto="0 0 0 0 0 -0.2" size="0.03" mass="0.3"/>
      </body>
    </body>
    <body name="crate" pos="0.8 0 0.06">
      <joint name="crate_x" type="slide" axis="1 0 0" damping="2"/>
      <geom type="box" size="0.06 0.06 0.06" mass="0.5"/>
    </body>
  </worldbody>
  <actuator><motor joint="knee" gear="5" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


@pytest.mark.parametrize("name,gym_id", [("ant", "Ant-v5"), ("humanoid", "Humanoid-v5"), ("pusher", "Pusher-v5")])
def test_builtin_worlds_are_gymnasium_models(name, gym_id):
    import gymnasium as gym

    env = gym.make(gym_id)
    m = env.unwrapped.model
    cw = compile_world(name)
    assert cw.nq == m.nq and cw.model.nv == m.nv and cw.model.nu == m.nu
    assert np.allclose(cw.model.qpos0, m.qpos0)
    assert BUILTIN_WORLDS[name].fps == pytest.approx(1.0 / env.unwrapped.dt)
    env.close()


def test_mjcf_path_is_a_world(tmp_path):
    xml = tmp_path / "bot.xml"
    xml.write_text(ROBOT)
    w = get_world(str(xml))
    assert (w.floor, w.root_joint, w.objects) == ("ground", "base", ("crate",))
    assert w.feet == ("shin",)
    cw = compile_world(w)
    assert cw.floating and len(cw.object_dofs) == 1 and len(cw.actuated_dofs) == 1

    # drop the robot and let it settle: valid by construction
    m = cw.model
    d = mujoco.MjData(m)
    frames = []
    for t in range(120):
        frames.append(d.qpos.copy())
        d.ctrl[:] = 0.3 * np.sin(t / 10)
        for _ in range(6):
            mujoco.mj_step(m, d)
    clip = Clip(qpos=np.array(frames), fps=1 / (6 * m.opt.timestep), world=str(xml))
    good = score_clips([clip], w, ScoreConfig())[0]
    assert good["plausible"], good
    bad = corrupt.float_up(clip, 0.15)
    assert not score_clips([bad], w, ScoreConfig())[0]["plausible"]
    moved = corrupt.move_object(clip, 0.4)
    assert "object_unexplained_mps" in score_clips([moved], w, ScoreConfig())[0]["violations"]
