"""PD + inverse-dynamics tracker in a second physics engine: replay a clip in PyBullet.

The RLPF paper's real test of a physics judge is transfer: motion tracked in the training simulator
(0.97) and in another one (0.61-0.75). ``PDTracker`` and the learned tracker both run in the world's
MuJoCo model; this tracker loads the *same MJCF* into Bullet (``pybullet.loadMJCF``, DIRECT mode) and
runs the same controller there, so a clip's success stops being a property of one contact model.

The controller is ``rlpf.policies.pd_tracker.PDTracker``'s, per Bullet step on every actuated hinge::

    tau_j = clip( ff_j(t) + I_j * (kp * (q*_j - q_j) + kd * (v*_j - v_j)),  +-torque_scale * limit_j )

with the same smoothed, Hermite-interpolated reference, the world's declared ``pd_gains`` times the
same effective inertias ``I_j`` (``joint_inertia`` on the MJCF's MuJoCo model), and the torque limits
of the MJCF's actuators (gear x ctrlrange, ``CompiledWorld.torque_limit``); ``ff`` is the contact-free
inverse dynamics of the reference on the rigid-body model Bullet simulates (the MuJoCo model with
armature 0, see below; Bullet's own ``calculateInverseDynamics`` does not support the floating base
of an MJCF multibody, bullet3 issues #2521, #3149). One difference, forced by the missing armature:
the PD acts on the state predicted one step ahead (a stable PD, ``BulletTracker._rollout`` says why).

What ``loadMJCF`` (pybullet 3.2.7) makes of gymnasium's ant.xml / humanoid.xml, and what is done about it
(checked by ``tests/policies/test_bullet_tracker.py`` and at construction):

* floating base: a body with a ``free`` joint becomes the multibody's floating base (the free joint
  itself is reported as an "unknown field" and skipped). Bullet's base pose is its *inertial* frame,
  so the MuJoCo root pose (body frame position + quaternion w, x, y, z) is composed with the base's
  local inertial frame on the way in and out; Bullet quaternions are x, y, z, w.
* joints: hinges become revolute joints with the MJCF's names, axes and ranges (degrees converted);
  a body with several hinges (humanoid hips, shoulders, abdomen) becomes a chain of massless links,
  one per hinge, then a fixed joint to the body's own link (named as the body). Joints are mapped by
  name and their axes compared; at construction one pose with every hinge off zero is set in both
  engines and every body's frame must agree within ``KINEMATICS_TOLERANCE_M``.
* mass and inertia: the importer ignores ``density`` (it uses 1000 kg/m^3: the ant would weigh 182 kg
  instead of 0.91 kg), places each body's centre of mass at its *last* geom's centre and, unless told
  otherwise, replaces the inertia by the bounding box's. So the MJCF handed to Bullet is the world's
  file with each body's ``<inertial>`` made explicit - MuJoCo's compiled ``body_mass``, ``body_ipos``,
  ``body_iquat``, ``body_inertia`` - loaded with ``inertiafromgeom="false"`` and
  ``URDF_USE_INERTIA_FROM_FILE``; unnamed bodies get a name (``rlpf_body_<id>``) so every MuJoCo body
  has a Bullet link. Same masses, centres of mass and principal inertias as MuJoCo, to float32.
* armature: not imported and not representable in Bullet (no rotor inertia on a joint). The MJCF's
  armature (ant 1 kg m^2 on every joint, humanoid 0.006-0.02) is left out of the plant and of ``ff``
  (which must match the plant); the gains keep MuJoCo's torque units (``I_j`` with armature). This is
  the largest model difference for the ant, whose legs are otherwise ~0.03 kg: its joints need far
  less torque for the same accelerations in Bullet, so torque-limited joint motion is easier there;
  what the root needs (levitation, skating, teleporting) is unaffected.
* joint damping and stiffness: not imported; applied here each step as joint torques from the MuJoCo
  model, ``-b (v + h a) - stiffness * (q - springref)`` (implicit damping, see ``_rollout``), not
  clipped (they are the joint's, not the motor's), and compensated at the reference inside the motor
  torque (as ``mj_inverse``'s passive term is in ``PDTracker``'s feedforward). Explicit damping would
  need h < 2 I / b: without armature the ant's legs have I ~ 0.005 kg m^2 against b = 1 N m s at
  h = 0.01 s, exactly the limit. Bullet's default linear/angular velocity damping (0.04) is turned
  off: MuJoCo has none.
* joint limits: imported as Bullet's hard limit constraints (MuJoCo's are soft, solref/solimp).
* contacts: Bullet's own rigid contact model (LCP, 50 solver iterations, ERP stabilisation, no
  restitution) instead of MuJoCo's soft, margin-activated contacts (the ant's 1 cm ``margin``, solref,
  solimp have no Bullet equivalent): this is the deliberate difference. The importer maps
  contype / conaffinity to Bullet's group / mask, but Bullet requires both directions where MuJoCo
  requires either, and it gives geoms without a ``friction`` attribute mu = 0.5 (MuJoCo: 1) and
  combines friction by product (MuJoCo: max). So collisions are enabled per link pair by MuJoCo's
  rule (contype/conaffinity OR, no pair within one weld group, none between a weld group and its
  parent's) and each robot link's lateral friction is set so that link x floor = MuJoCo's
  max(geom, floor) friction; torsional and rolling friction stay 0 (condim 3).
* actuators: ignored by the importer; torques go through ``TORQUE_CONTROL`` after the default
  velocity motors are switched off. gravity and timestep are not read either: set from MuJoCo's
  ``opt.gravity`` and ``opt.timestep`` split into sub-steps of at most ``MAX_STEP_S`` (ant 4 x 2.5 ms,
  humanoid 2 x 1.5 ms; Bullet's semi-implicit Euler
  instead of the MJCFs' RK4).

Outcomes are exactly ``PDTracker``'s (``TrackResult``): the simulated Bullet state is mapped back to
MuJoCo qpos every frame, ``body_error_m`` is the mean distance of the robot's bodies (MuJoCo forward
kinematics of that qpos against the clip's), ``fell`` is ``rlpf.judge.tracking.fell_frames`` with the
world's ``fall_drop_m``, success uses the world's ``success_threshold_m``; ``diverged`` when the
first frame starts more than ``START_PENETRATION_M`` inside the floor or the state blows up.

Worlds this cannot load get a ``TrackerError`` naming the world: a robot without a free root joint on
a floor (Pusher-v5's fixed arm, Meta-World's arms), worlds with objects, joints other than hinges,
or an MJCF whose Bullet import does not reproduce MuJoCo's kinematic tree.

pybullet is imported only here (``rlpf.judge.tracking`` registers this class by import path), with
its start-up banner and the importer's warnings kept off stdout, so ``rlpf score``'s JSON stays clean.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.envs.worlds import CompiledWorld, World, compile_world, model_path, portable_world
from rlpf.judge.tracking import (
    Tracker,
    TrackerError,
    TrackResult,
    fell_frames,
)
from rlpf.policies.pd_tracker import (
    MAX_SPEED,
    START_PENETRATION_M,
    joint_inertia,
    robot_bodies,
    tracker_settings,
)
from rlpf.rewards.analysis import smoothed_kinematics

KINEMATICS_TOLERANCE_M = 1e-3
"""m: largest disagreement of a body frame between Bullet's import and MuJoCo at the construction
check (float32 round-off is ~1e-7 m; a misplaced joint or misread axis is centimetres)."""
AXIS_TOLERANCE = 1e-4
"""Largest |1 - cos| between a joint's axis in Bullet and in MuJoCo."""
MAX_STEP_S = 0.0025
"""s: longest Bullet step. The MJCF's timestep is split into equal sub-steps no longer than this, the
controller recomputed every sub-step. Bullet integrates rigid contacts with semi-implicit Euler, first
order, where gymnasium's ant steps 10 ms with RK4: at 10 ms its feet lost traction and valid gaits
drifted off course (30 valid CPG gaits, joints within 0.01 rad throughout: tracked 0.73 at 10 ms,
0.83 at 5 ms, 0.90 at 2.5 ms and at 1.25 ms - converged)."""


@contextlib.contextmanager
def _quiet_stdio():
    """Silence C-level stdout/stderr (Bullet prints its banner and importer warnings with printf)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _pybullet():
    if "pybullet" in sys.modules:
        return sys.modules["pybullet"]
    try:
        with _quiet_stdio():
            import pybullet
    except ImportError as e:
        raise TrackerError(f"the bullet tracker needs pybullet (pip install pybullet==3.2.7): {e}") from None
    return pybullet


def bullet_mjcf(cw: CompiledWorld) -> str:
    """The world's MJCF as Bullet should read it: every body's ``<inertial>`` explicit (MuJoCo's
    compiled mass, centre of mass, principal axes and inertia), ``inertiafromgeom="false"``, every
    hinge axis a unit vector (MuJoCo's ``jnt_axis``), and a name for every unnamed body
    (``rlpf_body_<MuJoCo body id>``). Returns the XML text."""
    m = cw.model
    xml = model_path(cw.world)
    try:
        tree = ET.parse(xml)
    except (ET.ParseError, OSError) as e:
        raise TrackerError(f"world {cw.name!r}: the bullet tracker cannot read {xml}: {e}") from None
    root = tree.getroot()
    if root.find(".//include") is not None:
        raise TrackerError(f"world {cw.name!r}: {xml} uses <include>, which Bullet's MJCF importer does not follow")
    worldbody = root.find("worldbody")
    bodies = list(worldbody.iter("body")) if worldbody is not None else []
    if len(bodies) != m.nbody - 1:
        raise TrackerError(f"world {cw.name!r}: {xml} has {len(bodies)} <body> elements under <worldbody>, MuJoCo "
                           f"compiles {m.nbody - 1} bodies (frames, replicate or attach are not readable by Bullet)")
    compiler = root.find("compiler")
    if compiler is None:
        compiler = ET.Element("compiler")
        root.insert(0, compiler)
    compiler.set("inertiafromgeom", "false")
    base = os.path.dirname(os.path.abspath(xml))
    for attr in ("meshdir", "texturedir"):   # the copy lives elsewhere: keep asset paths pointing at the original's
        compiler.set(attr, os.path.join(base, compiler.get(attr, "")) + os.sep)

    def fmt(values) -> str:
        return " ".join(f"{float(x):.17g}" for x in values)

    for b, el in enumerate(bodies, start=1):   # MuJoCo numbers bodies in XML depth-first order
        name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, b)
        if el.get("name", name) != name:
            raise TrackerError(f"world {cw.name!r}: body #{b} of {xml} is {el.get('name')!r} in the XML, "
                               f"{name!r} in MuJoCo's model")
        el.set("name", name or f"rlpf_body_{b}")
        joints = [j for j in el if j.tag in ("joint", "freejoint")]   # this body's, in MuJoCo's order
        if len(joints) != m.body_jntnum[b]:
            raise TrackerError(f"world {cw.name!r}: body {name!r} of {xml} has {len(joints)} joints in the XML, "
                               f"{m.body_jntnum[b]} in MuJoCo's model")
        for k, jel in enumerate(joints):
            jid = m.body_jntadr[b] + k
            if m.jnt_type[jid] in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                # unit axes: Bullet normalises an axis for the kinematics but not for the joint's dynamics
                # (the ant's "-1 1 0" ankles responded to torque with twice MuJoCo's effective inertia)
                jel.set("axis", fmt(m.jnt_axis[jid]))
        for old in el.findall("inertial"):
            el.remove(old)
        el.insert(0, ET.Element("inertial", pos=fmt(m.body_ipos[b]), quat=fmt(m.body_iquat[b]),
                                mass=f"{float(m.body_mass[b]):.17g}", diaginertia=fmt(m.body_inertia[b])))
    return ET.tostring(root, encoding="unicode")


def _rigid_model(cw: CompiledWorld) -> mujoco.MjModel:
    """MuJoCo's model of Bullet's rigid bodies, for the feedforward and the gains: armature 0, no
    passive forces, contacts and limits off (contact-free inverse dynamics, as ``rewards/analysis.py``)."""
    mi = mujoco.MjModel.from_xml_path(model_path(cw.world))
    mi.dof_armature[:] = 0.0
    mi.dof_damping[:] = 0.0      # the passive torques are applied and compensated explicitly (_rollout)
    mi.jnt_stiffness[:] = 0.0
    mi.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT) | int(mujoco.mjtDisableBit.mjDSBL_LIMIT)
    return mi


class BulletTracker(Tracker):
    """Track clips of one floating-base world in PyBullet with PD + inverse-dynamics feedforward.

    ``world``: a world name, an MJCF path or a ``World``; ``kp``/``kd`` default to the world's declared
    ``pd_gains`` (as ``PDTracker``); ``fall_drop_m`` and ``threshold_m`` to the world's declaration
    (``rlpf.judge.tracking.fall_drop_m`` / ``success_threshold``). See the module docstring.
    """

    name = "bullet"

    def __init__(self, world: str | World, kp: float | None = None, kd: float | None = None,
                 torque_scale: float | None = 1.0, fall_drop_m: float | None = None,
                 threshold_m: float | None = None, max_step_s: float = MAX_STEP_S):
        self._client = None
        if isinstance(max_step_s, bool) or not (isinstance(max_step_s, (int, float)) and np.isfinite(max_step_s)
                                                    and max_step_s > 0):
            raise TrackerError(f"BulletTracker: max_step_s must be a positive number of seconds, got {max_step_s!r}")
        self.cw: CompiledWorld = compile_world(world)
        self._spec_world = portable_world(world)
        cw, m = self.cw, self.cw.model
        self._check_world()
        # _check_world refused a world without a floating root, so the root address is real
        self.kp, self.kd, self.torque_scale, self.fall_drop_m, self.threshold_m, self._root_qadr = \
            tracker_settings(cw, kp, kd, torque_scale, fall_drop_m, threshold_m, "BulletTracker")

        self.max_step_s = float(max_step_s)
        self.substeps = max(1, int(np.ceil(m.opt.timestep / self.max_step_s - 1e-9)))
        self.h = float(m.opt.timestep) / self.substeps
        """s: the Bullet step (and the controller's): the MJCF's timestep in ``substeps`` equal parts."""

        # every hinge but the root: qpos address, dof, passive terms; the actuated ones with torque limits
        hinges = [j for j in range(m.njnt) if j != m.body_jntadr[cw.root_body]]
        self._joints = np.array(hinges, int)
        self._qadr = np.array([m.jnt_qposadr[j] for j in hinges], int)
        self._dofs = np.array([m.jnt_dofadr[j] for j in hinges], int)
        self._damping = m.dof_damping[self._dofs].copy()
        self._stiffness = m.jnt_stiffness[self._joints].copy()
        self._springref = m.qpos_spring[self._qadr].copy()
        act = {int(v): i for i, v in enumerate(cw.actuated_dofs)}
        self._actuated = np.array([k for k, v in enumerate(self._dofs) if int(v) in act], int)   # into the hinge list
        self._limit = None if self.torque_scale is None else \
            self.torque_scale * np.asarray(cw.torque_limit, float)[[act[int(self._dofs[k])] for k in self._actuated]]
        self._actuator = np.array([_actuator_of_dof(m, int(self._dofs[k])) for k in self._actuated], int)
        self._bodies = robot_bodies(cw)
        self._rigid = _rigid_model(cw)
        self._rigid_data = mujoco.MjData(self._rigid)
        self._root_vadr = int(m.jnt_dofadr[m.body_jntadr[cw.root_body]])
        self._scratch = mujoco.MjData(m)

        self._xml = bullet_mjcf(cw)
        self._p = _pybullet()
        self._client = self._p.connect(self._p.DIRECT)
        self._load()
        self._check_kinematics()

    # ------------------------------------------------------------------------------------------
    def _check_world(self) -> None:
        """A TrackerError naming the world for what this tracker cannot simulate."""
        cw, m = self.cw, self.cw.model
        why = None
        if not cw.floating:
            why = "it has no free root joint (a fixed-base arm)"
        elif cw.floor_geom is None:
            why = "it declares no floor"
        elif len(cw.object_bodies):
            why = f"it has movable objects {list(cw.world.objects)}"
        else:
            root_j = m.body_jntadr[cw.root_body]
            other = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(m.njnt)
                     if j != root_j and m.jnt_type[j] != int(mujoco.mjtJoint.mjJNT_HINGE)]
            if other:
                why = f"joints {other} are not hinges"
            elif m.body_rootid[cw.root_body] != cw.root_body or any(
                    m.body_parentid[b] == 0 and b != cw.root_body for b in range(1, m.nbody)):
                why = "its scene has bodies besides the robot"
            elif len(cw.actuated_dofs) == 0:
                why = "it has no joint actuators with torque limits"
        if why:
            raise TrackerError(f"world {cw.name!r} cannot be tracked in Bullet: {why}; the bullet tracker simulates "
                               "a floating robot of hinge joints on a floor (the ant, the humanoid)")

    def _load(self) -> None:
        """(Re)build the Bullet world: gravity, timestep, the robot with MuJoCo's masses, contacts, friction."""
        p, c, cw, m = self._p, self._client, self.cw, self.cw.model
        p.resetSimulation(physicsClientId=c)
        p.setGravity(*m.opt.gravity, physicsClientId=c)
        p.setPhysicsEngineParameter(fixedTimeStep=self.h, numSubSteps=0,
                                    deterministicOverlappingPairs=1, physicsClientId=c)
        flags = p.URDF_USE_INERTIA_FROM_FILE | p.URDF_USE_SELF_COLLISION
        # loadMJCF reads a file: the rewritten MJCF lives on disk only while Bullet parses it
        fd, path = tempfile.mkstemp(prefix=f"rlpf-bullet-{cw.name.replace(os.sep, '_')}-", suffix=".xml")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self._xml)
            with _quiet_stdio():
                ids = p.loadMJCF(path, flags=flags, physicsClientId=c)
        except p.error as e:
            raise TrackerError(f"world {cw.name!r}: pybullet.loadMJCF cannot load {model_path(cw.world)}: {e}") from None
        finally:
            os.remove(path)
        root_name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, cw.root_body)
        floor_name = cw.world.floor
        by_base = {p.getBodyInfo(b, physicsClientId=c)[0].decode(): b for b in ids}
        if root_name not in by_base or floor_name not in by_base:
            raise TrackerError(f"world {cw.name!r}: Bullet's import of {model_path(cw.world)} has no "
                               f"{root_name if root_name not in by_base else floor_name!r} "
                               f"(it made {sorted(by_base)})")
        self._robot, self._floor = by_base[root_name], by_base[floor_name]
        robot = self._robot

        # links by MuJoCo body (-1: the base) and revolute joints by MuJoCo joint name
        link_of_body = {cw.root_body: -1}
        joint_of = {}
        body_id = {mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, b) or f"rlpf_body_{b}": b for b in range(1, m.nbody)}
        for j in range(p.getNumJoints(robot, physicsClientId=c)):
            info = p.getJointInfo(robot, j, physicsClientId=c)
            link = info[12].decode()
            if link in body_id:
                link_of_body[body_id[link]] = j
            if info[2] in (p.JOINT_REVOLUTE, p.JOINT_PRISMATIC):
                joint_of[info[1].decode()] = (j, np.asarray(info[13], float))
        missing_b = [n for n, b in body_id.items() if b not in link_of_body]
        if missing_b:
            raise TrackerError(f"world {cw.name!r}: Bullet's import has no links for bodies {missing_b}")
        idx = []
        for jid in self._joints:
            jname = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, int(jid))
            if jname not in joint_of:
                raise TrackerError(f"world {cw.name!r}: Bullet's import has no revolute joint named {jname!r}")
            j, axis = joint_of[jname]
            axis = axis / (np.linalg.norm(axis) or 1.0)
            if 1.0 - float(axis @ m.jnt_axis[jid]) > AXIS_TOLERANCE:
                raise TrackerError(f"world {cw.name!r}: joint {jname!r} turns about {axis.round(4).tolist()} in "
                                   f"Bullet, {m.jnt_axis[jid].round(4).tolist()} in MuJoCo")
            idx.append(j)
        self._bullet_joints = idx
        self._link_of_body = link_of_body
        ipos, iorn = p.getDynamicsInfo(robot, -1, physicsClientId=c)[3:5]
        self._base_inertial = (tuple(ipos), tuple(iorn))
        self._base_inertial_inv = p.invertTransform(ipos, iorn)

        p.changeDynamics(robot, -1, linearDamping=0.0, angularDamping=0.0, physicsClientId=c)
        p.setJointMotorControlArray(robot, idx, p.VELOCITY_CONTROL, forces=[0.0] * len(idx), physicsClientId=c)
        self._configure_contacts()

    def _configure_contacts(self) -> None:
        """MuJoCo's collision rule and floor friction on Bullet's links (see the module docstring)."""
        p, c, cw, m = self._p, self._client, self.cw, self.cw.model
        robot, floor = self._robot, self._floor
        floor_g = cw.floor_geom
        geoms_of = {b: [g for g in cw.robot_geoms if m.geom_bodyid[g] == b] for b in self._link_of_body}
        weld = m.body_weldid

        def can_touch(g1: int, g2: int) -> bool:
            return bool((m.geom_contype[g1] & m.geom_conaffinity[g2]) or (m.geom_contype[g2] & m.geom_conaffinity[g1]))

        def filtered(b1: int, b2: int) -> bool:   # mj_collision's filterBodyPair (filterparent on)
            w1, w2 = weld[b1], weld[b2]
            if w1 == w2:
                return True
            return bool(w1 and w2 and (w1 == weld[m.body_parentid[w2]] or w2 == weld[m.body_parentid[w1]]))

        mu_floor = float(m.geom_friction[floor_g, 0])
        p.changeDynamics(floor, -1, lateralFriction=1.0, spinningFriction=0.0, rollingFriction=0.0,
                         restitution=0.0, physicsClientId=c)
        bodies = sorted(self._link_of_body)
        for b in bodies:
            link = self._link_of_body[b]
            if geoms_of[b]:
                mu = max([mu_floor] + [float(m.geom_friction[g, 0]) for g in geoms_of[b]])   # MuJoCo: max of the pair
                p.changeDynamics(robot, link, lateralFriction=mu, spinningFriction=0.0, rollingFriction=0.0,
                                 restitution=0.0, physicsClientId=c)
            touch_floor = any(can_touch(g, floor_g) for g in geoms_of[b])
            p.setCollisionFilterPair(robot, floor, link, -1, int(touch_floor), physicsClientId=c)
        for i, b1 in enumerate(bodies):
            for b2 in bodies[i + 1:]:
                ok = not filtered(b1, b2) and any(can_touch(g1, g2) for g1 in geoms_of[b1] for g2 in geoms_of[b2])
                p.setCollisionFilterPair(robot, robot, self._link_of_body[b1], self._link_of_body[b2], int(ok),
                                         physicsClientId=c)

    def _check_kinematics(self) -> None:
        """One pose, every hinge off zero, in both engines: each body's frame must agree."""
        m, d = self.cw.model, self._scratch
        q = m.qpos0.copy()
        a = self._root_qadr
        q[a:a + 3] = [0.3, -0.2, 1.5]
        q[a + 3:a + 7] = np.array([0.9, 0.1, -0.2, 0.3]) / np.linalg.norm([0.9, 0.1, -0.2, 0.3])
        lo, hi = m.jnt_range[self._joints].T
        limited = m.jnt_limited[self._joints].astype(bool)
        q[self._qadr] = np.where(limited, lo + 0.37 * (hi - lo), 0.4)
        self._set_state(q, np.zeros(m.nv))
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        pos = self.bullet_body_positions()
        err = np.linalg.norm(pos - d.xpos[1:], axis=1)
        if err.max() > KINEMATICS_TOLERANCE_M:
            b = int(np.argmax(err)) + 1
            raise TrackerError(f"world {self.cw.name!r}: Bullet's import of {model_path(self.cw.world)} does not "
                               f"reproduce MuJoCo's kinematics (body "
                               f"{mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, b)!r} is {err.max():.3f} m off)")

    # ------------------------------------------------------------------------------------------
    def spec(self) -> tuple:
        return BulletTracker, {"world": self._spec_world, "kp": self.kp, "kd": self.kd,
                               "torque_scale": self.torque_scale, "fall_drop_m": self.fall_drop_m,
                               "threshold_m": self.threshold_m, "max_step_s": self.max_step_s}

    def __repr__(self) -> str:
        return (f"BulletTracker({self.cw.name!r}, kp={self.kp:g}, kd={self.kd:g}, torque_scale={self.torque_scale}, "
                f"fall_drop_m={self.fall_drop_m:g}, threshold_m={self.threshold_m:g}, max_step_s={self.max_step_s:g})")

    def close(self) -> None:
        """Disconnect from Bullet (also done when the tracker is collected)."""
        if getattr(self, "_client", None) is not None:
            try:
                self._p.disconnect(physicsClientId=self._client)
            except Exception:  # noqa: BLE001 - already gone at interpreter exit
                pass
            self._client = None

    def __del__(self):
        self.close()

    def __getstate__(self):
        raise TypeError("a BulletTracker holds a Bullet connection: ship its spec() (Tracker.track does)")

    # ------------------------------------------------------------------------------------------
    # MuJoCo qpos/qvel <-> Bullet state

    def _set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put the robot at MuJoCo state (qpos, qvel): root body frame -> Bullet's base inertial frame."""
        p, c, a = self._p, self._client, self._root_qadr
        va = int(self.cw.model.jnt_dofadr[self.cw.model.body_jntadr[self.cw.root_body]])
        w, x, y, z = qpos[a + 3:a + 7] / np.linalg.norm(qpos[a + 3:a + 7])
        pos, orn = p.multiplyTransforms(qpos[a:a + 3], (x, y, z, w), *self._base_inertial)
        p.resetBasePositionAndOrientation(self._robot, pos, orn, physicsClientId=c)
        R = np.array(p.getMatrixFromQuaternion((x, y, z, w))).reshape(3, 3)
        omega = R @ qvel[va + 3:va + 6]                           # MuJoCo: body-local angular velocity
        arm = np.asarray(pos) - qpos[a:a + 3]
        v_com = qvel[va:va + 3] + np.cross(omega, arm)            # MuJoCo: velocity of the body frame's origin
        p.resetBaseVelocity(self._robot, v_com.tolist(), omega.tolist(), physicsClientId=c)
        for j, qa, v in zip(self._bullet_joints, self._qadr, self._dofs):
            p.resetJointState(self._robot, j, float(qpos[qa]), float(qvel[v]), physicsClientId=c)

    def _get_qpos(self, q_joints) -> np.ndarray:
        """MuJoCo qpos of the current Bullet state (joint positions given, as read this step)."""
        p, c, a = self._p, self._client, self._root_qadr
        qpos = self.cw.model.qpos0.copy()
        pos, orn = p.getBasePositionAndOrientation(self._robot, physicsClientId=c)
        bpos, borl = p.multiplyTransforms(pos, orn, *self._base_inertial_inv)
        qpos[a:a + 3] = bpos
        qpos[a + 3:a + 7] = (borl[3], borl[0], borl[1], borl[2])
        qpos[self._qadr] = q_joints
        return qpos

    def bullet_body_positions(self) -> np.ndarray:
        """[nbody - 1, 3] world positions of the MuJoCo bodies' frames (body 1 on) in Bullet's current state."""
        p, c = self._p, self._client
        out = np.empty((self.cw.model.nbody - 1, 3))
        for b, link in self._link_of_body.items():
            if link == -1:
                pos, orn = p.getBasePositionAndOrientation(self._robot, physicsClientId=c)
                out[b - 1] = p.multiplyTransforms(pos, orn, *self._base_inertial_inv)[0]
            else:
                out[b - 1] = p.getLinkState(self._robot, link, computeForwardKinematics=True, physicsClientId=c)[4]
        return out

    def set_qpos(self, qpos: np.ndarray) -> None:
        """Put the Bullet robot at MuJoCo ``qpos`` at rest (for inspection and tests)."""
        self._set_state(np.asarray(qpos, float), np.zeros(self.cw.model.nv))

    # ------------------------------------------------------------------------------------------
    def track_one(self, clip: Clip) -> TrackResult:
        t0 = time.perf_counter()
        cw, m = self.cw, self.cw.model
        raw = np.asarray(clip.qpos, dtype=np.float64)
        T = len(raw) if raw.ndim == 2 else 0
        if raw.ndim != 2 or raw.shape[1] != m.nq or T < 2 or not np.isfinite(raw).all() \
                or not (np.isfinite(clip.fps) and clip.fps > 0):
            return self._failed(clip, max(T, 1), f"not a finite [T >= 2, nq={m.nq}] clip of world {cw.name!r}")
        ref_q, ref_v, ff, inertia = self._reference(clip)
        # a fresh world per clip: Bullet's contact caches and warm starts would otherwise carry over,
        # and a clip's result would depend on which clips a worker tracked before it
        self._load()
        self._set_state(ref_q[0], ref_v[0])
        depth = self._start_depth()
        if depth > START_PENETRATION_M:
            return self._failed(clip, T, f"the first frame is {depth:.3f} m inside the floor", start_depth_m=depth)
        qpos, torques, why = self._rollout(ref_q, ref_v, ff, inertia, clip.fps, T)
        body_sim = self._positions(qpos)
        body_ref = self._positions(raw)
        body_err = np.linalg.norm(body_sim - body_ref, axis=-1).mean(axis=1)
        root = slice(self._root_qadr, self._root_qadr + 7)
        sank = raw[:, self._root_qadr + 2] - qpos[:, self._root_qadr + 2]
        drop = float(np.nanmax(sank)) if np.isfinite(sank).any() else 0.0
        fell = bool(fell_frames(qpos[:, root], raw[:, root], self.fall_drop_m).any())
        info = {"tracker": self.name, "engine": "pybullet", "kp": self.kp, "kd": self.kd, "root_drop_m": drop,
                "start_depth_m": depth, "sim_seconds": (T - 1) / clip.fps, "wall_seconds": time.perf_counter() - t0}
        if why:
            info["why"] = why
        return TrackResult(source=clip.source, qpos=qpos, body_error_m=body_err, torques=torques,
                           fell=fell, diverged=bool(why), threshold_m=self.threshold_m, info=info)

    def _reference(self, clip: Clip):
        """Smoothed reference qpos/qvel, contact-free inverse dynamics and effective inertia on the
        armature-free rigid model Bullet simulates (``rlpf.policies.pd_tracker.reference_dynamics``'s
        computation on that model)."""
        mi = self._rigid
        d = mujoco.MjData(mi)
        qpos, _, qvel, qacc = smoothed_kinematics(self.cw.model, clip.qpos, clip.dt)
        qfrc = np.empty((len(qpos), mi.nv))
        for t in range(len(qpos)):
            d.qpos[:], d.qvel[:], d.qacc[:] = qpos[t], qvel[t], qacc[t]
            mujoco.mj_inverse(mi, d)
            qfrc[t] = d.qfrc_inverse
        return qpos, qvel, qfrc, joint_inertia(self.cw.model, self._scratch, qpos, self._dofs)

    def _start_depth(self) -> float:
        """Deepest penetration (m) of a robot link into the floor at the current state (0 if none)."""
        p, c = self._p, self._client
        p.performCollisionDetection(physicsClientId=c)
        pts = p.getContactPoints(self._robot, self._floor, physicsClientId=c)
        return float(max([0.0] + [-pt[8] for pt in pts]))

    def _targets(self, ref_q, ref_v, ff, fps: float):
        """Hinge position/velocity targets at the *end* of each Bullet step (cubic Hermite between
        frames, as ``PDTracker``), the feedforward (all dofs) at each step's start, linear between
        frames, and the step after which each frame is recorded."""
        h = self.h
        T = len(ref_q)
        step_of_frame = np.round(np.arange(T) / (fps * h)).astype(int)
        n_steps = int(step_of_frame[-1])

        def at(t):
            k = np.minimum(t.astype(int), T - 2)
            return k, (t - k)[:, None]

        k, u = at(np.arange(1, n_steps + 1) * h * fps)
        q0, q1 = ref_q[k][:, self._qadr], ref_q[k + 1][:, self._qadr]
        m0, m1 = ref_v[k][:, self._dofs] / fps, ref_v[k + 1][:, self._dofs] / fps
        u2, u3 = u * u, u * u * u
        q = (2 * u3 - 3 * u2 + 1) * q0 + (u3 - 2 * u2 + u) * m0 + (3 * u2 - 2 * u3) * q1 + (u3 - u2) * m1
        v = ((6 * u2 - 6 * u) * (q0 - q1) + (3 * u2 - 4 * u + 1) * m0 + (3 * u2 - 2 * u) * m1) * fps
        k, u = at(np.arange(n_steps) * h * fps)
        f = (1 - u) * ff[k] + u * ff[k + 1]
        return q, v, f, np.r_[step_of_frame, -1]

    def _state(self, q_joints, v_joints):
        """MuJoCo (qpos, qvel) of the current Bullet state (hinge positions and velocities given)."""
        p, c, m = self._p, self._client, self.cw.model
        qpos = self._get_qpos(q_joints)
        qvel = np.zeros(m.nv)
        va = self._root_vadr
        lin, ang = p.getBaseVelocity(self._robot, physicsClientId=c)
        pos = p.getBasePositionAndOrientation(self._robot, physicsClientId=c)[0]
        a = self._root_qadr
        w, x, y, z = qpos[a + 3:a + 7]
        R = np.array(p.getMatrixFromQuaternion((x, y, z, w))).reshape(3, 3)
        omega = np.asarray(ang)
        qvel[va:va + 3] = np.asarray(lin) - np.cross(omega, np.asarray(pos) - qpos[a:a + 3])
        qvel[va + 3:va + 6] = R.T @ omega
        qvel[self._dofs] = v_joints
        return qpos, qvel

    def _rollout(self, ref_q, ref_v, ff, inertia, fps: float, T: int):
        """Simulate from the state already set; MuJoCo qpos and mean actuator torque per frame, and why it failed.

        The gains are ``PDTracker``'s in torque units (kp, kd times each joint's effective inertia in
        the MJCF's model, armature included: the same N m per rad of error), but Bullet's joints lack
        that armature - the ant's legs weigh ~0.03 kg against a 0.33 kg torso and 1 kg m^2 of rotor
        inertia in MuJoCo - and an explicit loop at those gains is unstable at the MJCF timestep
        (kd h / I ~ 100; it blew up within a second on valid gaits even at inertia-scaled gains,
        through a mode where every hip turns one way and the torso the other). So the loop is a stable
        PD (Tan, Liu & Turk 2011): PD and joint damping act on the state predicted one step ahead,
        q + h v and v + h a, with a from the armature-free rigid-body equations

            (M + h (Kd + B)) a = ff - c + f_c + Kp (q* - q - h v) + (Kd + B) (v* - v) + K (q* - q)

        (M, c: mass matrix and bias forces at the simulated state; ff: the reference's contact-free
        inverse dynamics on the hinges; f_c: the generalized contact and limit force Bullet applied in
        the previous step, M a_prev + c_prev - tau_prev - without it the prediction would expect the
        legs to swing freely and the PD would give way under the body's weight: 0.1-0.3 rad ankle
        errors measured on valid ant gaits, 0.03 with it). Damping so treated is implicit, as MuJoCo's
        Euler integrator treats it. Away from the step frequency this is the same PD law.
        """
        p, c, robot, joints = self._p, self._client, self._robot, self._bullet_joints
        m, mi, d = self.cw.model, self._rigid, self._rigid_data
        h = self.h
        q_t, v_t, ff_t, step_of_frame = self._targets(ref_q, ref_v, ff, fps)
        dofs, act = self._dofs, self._actuated
        kp_i, kd_i = self.kp * inertia, self.kd * inertia
        B, K, q_s = self._damping, self._stiffness, self._springref
        lo, hi = (None, None) if self._limit is None else (-self._limit, self._limit)
        damp_all = np.zeros(m.nv)
        damp_all[dofs] = kd_i + B
        M = np.empty((m.nv, m.nv))
        bias = np.empty(m.nv)
        qpos = np.full((T, m.nq), np.nan)
        torques = np.zeros((T, m.nu))
        q, v = ref_q[0][self._qadr].copy(), ref_v[0][dofs].copy()
        frame, since = 0, 0
        while frame < T and step_of_frame[frame] == 0:
            qpos[frame] = self._get_qpos(q)
            frame += 1
        tau_sum = np.zeros(len(act))
        f_c = None
        applied = np.zeros(m.nv)
        for i in range(len(q_t)):
            d.qpos[:], qvel_now = self._state(q, v)
            if f_c is None:   # first step: the root force the reference needs, as contact would supply it
                f_c = ff_t[0].copy()
                f_c[dofs] = 0.0
            else:             # what Bullet's contacts and limits did last step
                f_c = M0 @ ((qvel_now - qvel_prev) / h) + bias0 - applied
            d.qvel[:] = qvel_now
            mujoco.mj_kinematics(mi, d)
            mujoco.mj_comPos(mi, d)
            mujoco.mj_crb(mi, d)
            mujoco.mj_comVel(mi, d)
            mujoco.mj_rne(mi, d, 0, bias)
            mujoco.mj_fullM(mi, M, d.qM)
            M0, bias0, qvel_prev = M.copy(), bias.copy(), qvel_now
            e_q = q_t[i] - q - h * v
            e_v = v_t[i] - v
            rhs = -bias + f_c
            rhs[dofs] += ff_t[i][dofs] + kp_i * e_q + (kd_i + B) * e_v + K * (q_t[i] - q)
            M[np.diag_indices_from(M)] += h * damp_all
            acc = np.linalg.solve(M, rhs)[dofs]
            motor = (ff_t[i][dofs] + B * v_t[i] + K * (q_t[i] - q_s) + kp_i * e_q + kd_i * (e_v - h * acc))[act]
            if lo is not None:
                motor = np.clip(motor, lo, hi)
            tau = -B * (v + h * acc) - K * (q - q_s)     # the joints' own damping and springs
            tau[act] += motor
            applied[:] = 0.0
            applied[dofs] = tau
            p.setJointMotorControlArray(robot, joints, p.TORQUE_CONTROL, forces=tau.tolist(), physicsClientId=c)
            p.stepSimulation(physicsClientId=c)
            states = p.getJointStates(robot, joints, physicsClientId=c)
            q = np.fromiter((s[0] for s in states), float, len(joints))
            v = np.fromiter((s[1] for s in states), float, len(joints))
            tau_sum += motor
            since += 1
            if step_of_frame[frame] != i + 1:
                continue
            row, vel = self._state(q, v)
            if not (np.isfinite(row).all() and np.isfinite(vel).all()) or np.abs(vel).max() > MAX_SPEED:
                return qpos, torques, f"simulation diverged before frame {frame}"
            torques[frame - 1, self._actuator] = tau_sum / since
            tau_sum[:], since = 0.0, 0
            while frame < T and step_of_frame[frame] == i + 1:
                qpos[frame] = row
                frame += 1
        torques[-1] = torques[-2]
        return qpos, torques, ""

    def _positions(self, qpos: np.ndarray) -> np.ndarray:
        """[T, B, 3] robot body positions (MuJoCo forward kinematics) of each frame's qpos; NaN rows stay NaN."""
        m, d = self.cw.model, self._scratch
        body = np.full((len(qpos), len(self._bodies), 3), np.nan)
        for t in range(len(qpos)):
            if np.isfinite(qpos[t]).all():
                d.qpos[:] = qpos[t]
                mujoco.mj_kinematics(m, d)
                body[t] = d.xpos[self._bodies]
        return body

    def _failed(self, clip: Clip, T: int, why: str, **info) -> TrackResult:
        m = self.cw.model
        return TrackResult(source=clip.source, qpos=np.full((T, m.nq), np.nan), body_error_m=np.full(T, np.nan),
                           torques=np.zeros((T, m.nu)), fell=False, diverged=True, threshold_m=self.threshold_m,
                           info={"tracker": self.name, "engine": "pybullet", "why": why, **info})


def _actuator_of_dof(m: mujoco.MjModel, dof: int) -> int:
    joint = m.dof_jntid[dof]
    for a in range(m.nu):
        if m.actuator_trntype[a] == int(mujoco.mjtTrn.mjTRN_JOINT) and m.actuator_trnid[a, 0] == joint:
            return a
    raise ValueError(f"dof {dof} has no actuator")
