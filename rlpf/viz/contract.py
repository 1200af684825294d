"""The video contract: how rlpf renders a clip of a world to a video that pose lifting can read back.

``rlpf render`` writes videos under it, ``rlpf.lifting`` renders its training frames under it (with
domain randomization *inside* it) and reads videos assuming it. The written contract, with the reasons
for each choice, is docs/video-contract.md; this module is the code of record.

    contract = contract_for("ant")                    # camera, resolution, colours, floor
    with contract.renderer() as r:                    # a ClipRenderer set up to the contract
        frames = r.frames(clip.qpos)                  # uint8 [T, size, size, 3]
    render_video(clip, "walk.mp4", contract)          # at the clip's own fps

The camera follows the root in x and y only, at a fixed look-at height, distance, elevation and
azimuth: the root's height shows as the body's height in the frame and against the floor, its
horizontal velocity only as the floor pattern moving under it, so the contract keeps the world's
checker floor (its period is part of the contract).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

from rlpf.core.clips import Clip
from rlpf.viz.render import ClipRenderer, RenderError, write_mp4

ANT_LEG_COLOURS = {
    1: (0.85, 0.22, 0.18, 1.0),   # red: the leg at +x +y of the torso (hip_1 / ankle_1)
    2: (0.20, 0.62, 0.25, 1.0),   # green: -x +y (hip_2 / ankle_2)
    3: (0.20, 0.35, 0.85, 1.0),   # blue: -x -y (hip_3 / ankle_3)
    4: (0.90, 0.78, 0.15, 1.0),   # yellow: +x -y (hip_4 / ankle_4)
}
"""One colour per ant leg (thigh and shin, the parts after the hip joint). The ant's four legs are
identical and 90 degrees apart, so in one colour a frame could not tell a heading from the same
heading turned by 90 degrees (with the legs relabelled): the colours make heading and joint labels
readable from a single frame. The four short segments fixed to the torso (``aux_*_geom``, before the
hip joints) keep the torso's tan: the torso is a plain sphere, so they are what shows its yaw, and
the bend between a tan segment and its coloured leg is the hip angle (a torso turned by a and all hips
by -a would otherwise look the same)."""
_ANT_LEG_GEOMS = {1: ("left_leg_geom", "left_ankle_geom"),
                  2: ("right_leg_geom", "right_ankle_geom"),
                  3: ("back_leg_geom", "third_ankle_geom"),
                  4: ("rightback_leg_geom", "fourth_ankle_geom")}


@dataclass(frozen=True)
class Marker:
    """A visual-only geom the contract adds to one body: it renders, but it has no collision and no
    mass, and it exists only in the renderers' copy of the model (the world's physics is untouched)."""

    name: str
    """Geom name (must not clash with the world's)."""
    body: str
    """Body it is fixed to."""
    type: str
    """"sphere" or "cylinder" (a cylinder's axis is the body's z)."""
    size: tuple
    """MuJoCo geom size (sphere: (radius,); cylinder: (radius, half-height)), m."""
    rgba: tuple
    """Colour (r, g, b, a), 0-1."""
    pos: tuple = (0.0, 0.0, 0.0)
    """Position in the body's frame (m)."""

    def add_to(self, spec) -> None:
        """Add this geom to a ``mujoco.MjSpec`` of the world's MJCF."""
        import mujoco

        types = {"sphere": mujoco.mjtGeom.mjGEOM_SPHERE, "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER}
        if self.type not in types:
            raise RenderError(f"marker {self.name!r}: type must be one of {sorted(types)}, got {self.type!r}")
        body = spec.body(self.body)
        if body is None:
            raise RenderError(f"marker {self.name!r}: the world has no body {self.body!r}")
        g = body.add_geom()
        g.name, g.type = self.name, types[self.type]
        g.size = (list(self.size) + [0.0, 0.0, 0.0])[:3]
        g.pos, g.rgba = list(self.pos), list(self.rgba)
        g.contype, g.conaffinity, g.density, g.mass = 0, 0, 0.0, 0.0


ANT_MARKERS = (
    Marker("contract_front", "torso", "sphere", (0.07,), (0.10, 0.80, 0.85, 1.0), pos=(0.25, 0.0, 0.0)),
    Marker("contract_back", "torso", "sphere", (0.07,), (0.55, 0.25, 0.90, 1.0), pos=(-0.25, 0.0, 0.0)),
    Marker("contract_left", "torso", "sphere", (0.07,), (0.85, 0.20, 0.75, 1.0), pos=(0.0, 0.25, 0.0)),
    Marker("contract_right", "torso", "sphere", (0.07,), (0.85, 0.20, 0.75, 1.0), pos=(0.0, -0.25, 0.0)),
)
"""The ant torso's markings: four spots (7 cm spheres centred on its surface) on the equator between
the legs, cyan at the front (+x, between legs 1 and 4), violet at the back, magenta at the sides.
The torso is a plain sphere: without them its orientation shows only where the legs leave it. A
spot's place on the sphere's disc draws the torso's tilt and yaw directly, wherever it turns
(measured: a lifter trained with them reads orientation as well as without - 2-3 deg on rlpf's own
clips, 4-6 deg on clips made elsewhere - and gives the same verdicts; README). They stay on the
equator, below the sphere's upper arc that root height is read from (rlpf.lifting.root_height: the
arc is at ~55 deg latitude for an upright torso; a spot reaches 16 deg), and each is a colour no leg
has, so the refiner's part labels keep them apart."""


@dataclass(frozen=True)
class VideoContract:
    """How one world's clips look on video (docs/video-contract.md)."""

    world: str
    """World name (rlpf.envs.worlds)."""
    size: int = 128
    """Frame width and height in pixels (square frames)."""
    distance: float | None = 2.5
    """Camera distance from the look-at point (m); None: ClipRenderer's default for the world."""
    elevation: float = -35.0
    """Camera elevation (degrees; negative looks down)."""
    azimuth: float = 90.0
    """Camera azimuth (degrees, MuJoCo's free camera: 90 looks along +y)."""
    lookat_z: float | None = 0.6
    """Fixed look-at height (m) of a camera that follows the root in x and y; None follows x, y and z."""
    geom_rgba: tuple = ()
    """((geom name, (r, g, b, a)), ...) colours that differ from the world's MJCF."""
    floor: tuple | None = None
    """(dark RGB, light RGB) 0-255 of the floor's checker texture; None keeps the MJCF's."""
    markers: tuple = ()
    """Visual-only geoms (Marker) added to the robot so that its pose reads from a frame."""
    notes: str = ""
    """What else a reader of these videos may assume (shown by ``rlpf render --help``)."""

    def renderer(self, size: int | None = None, world=None) -> ClipRenderer:
        """A ClipRenderer set up to this contract (``size`` overrides the resolution)."""
        s = int(size or self.size)
        r = ClipRenderer(world or self.world, s, s, distance=self.distance, elevation=self.elevation,
                         azimuth=self.azimuth, follow="xyz" if self.lookat_z is None else "xy",
                         lookat_z=self.lookat_z, geom_rgba=dict(self.geom_rgba), markers=self.markers)
        if self.floor is not None:
            r.set_floor_colours(*self.floor)
        return r


CONTRACTS: dict[str, VideoContract] = {
    "ant": VideoContract(
        world="ant", size=128, distance=2.5, elevation=-35.0, azimuth=90.0, lookat_z=0.6,
        geom_rgba=tuple((g, ANT_LEG_COLOURS[leg]) for leg, geoms in _ANT_LEG_GEOMS.items() for g in geoms),
        floor=None, markers=ANT_MARKERS,
        notes="torso and its four hip segments tan (MJCF colour), legs red / green / blue / yellow after "
              "hip_1..hip_4; four spots on the torso's equator between the legs: cyan at its front (+x), "
              "violet at its back, magenta at its sides; the MJCF's checker "
              "floor (0.667 m squares, period 1.333 m), MuJoCo's default light and headlight"),
}
"""The contracts rlpf has; another world gets ``default_contract`` until it declares its own."""


def default_contract(world: str) -> VideoContract:
    """A floating-base world without a declared contract: the camera follows the root in x, y at the
    root's initial height, ClipRenderer's default distance; a fixed-base world: its declared view."""
    import mujoco

    from rlpf.envs.worlds import compile_world

    cw = compile_world(world)
    if cw.root_body is None:
        return VideoContract(world=cw.name, distance=None, lookat_z=None)
    d = mujoco.MjData(cw.model)
    mujoco.mj_kinematics(cw.model, d)
    return VideoContract(world=cw.name, distance=None, lookat_z=round(float(d.xpos[cw.root_body, 2]), 3))


def contract_for(world, size: int | None = None) -> VideoContract:
    """The contract of ``world`` (a name, World or CompiledWorld), at ``size`` px when given."""
    from rlpf.envs.worlds import compile_world

    cw = compile_world(world)
    c = CONTRACTS.get(cw.name) or default_contract(cw.name)
    if size is not None:
        if not 16 <= int(size) <= 1024:
            raise RenderError(f"video size must be 16-1024 px, got {size}")
        c = dataclasses.replace(c, size=int(size))
    return c


def render_video(clip: Clip, path: str, contract: VideoContract | None = None,
                 renderer: ClipRenderer | None = None) -> str:
    """Write ``clip`` as an mp4 at ``path`` under ``contract`` (default: its world's), at the clip's fps."""
    contract = contract or contract_for(clip.world)
    own = renderer is None
    r = renderer or contract.renderer()
    try:
        frames = r.frames(np.asarray(clip.qpos))
    finally:
        if own:
            r.close()
    return write_mp4(os.fspath(path), frames, float(clip.fps))


@dataclass
class Randomization:
    """Domain randomization inside the contract, drawn once per rendered clip (rlpf.lifting's dataset)."""

    light: float = 0.35
    """Main light's diffuse strength varies by up to +-this fraction; its direction tilts up to 25 deg."""
    ambient: float = 0.15
    """Added ambient light, uniform in [0, ambient]."""
    camera_deg: float = 1.5
    """Camera elevation and azimuth jitter (degrees, uniform +-)."""
    camera_distance: float = 0.03
    """Camera distance jitter (fraction, uniform +-)."""
    lookat_m: float = 0.02
    """Look-at point jitter (m, uniform +- per axis)."""
    floor: bool = True
    """Redraw the floor's two checker colours (dark 0-90, light 150-255 per channel, low saturation)."""
    base_light: dict = field(default_factory=dict, repr=False)
    """(filled on first use) the contract renderer's own light, the centre of the draws."""

    def apply(self, r: ClipRenderer, contract: VideoContract, rng: np.random.Generator) -> dict:
        """Set ``r`` (made by ``contract.renderer()``) to one random draw; returns what was drawn."""
        m = r.model
        if not self.base_light:   # the contract's own light, kept to draw around
            self.base_light = {"diffuse": m.light_diffuse.copy(), "ambient": m.light_ambient.copy(),
                               "dir": m.light_dir.copy()}
        b = self.base_light
        k = 1.0 + rng.uniform(-self.light, self.light)
        m.light_diffuse[:] = np.clip(b["diffuse"] * k, 0, 1)
        m.light_ambient[:] = np.clip(b["ambient"] + rng.uniform(0, self.ambient), 0, 1)
        tilt, turn = np.radians(rng.uniform(0, 25)), rng.uniform(-np.pi, np.pi)
        m.light_dir[:] = np.array([np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn), -np.cos(tilt)])
        cam = r.camera
        if contract.distance is not None:
            cam.distance = contract.distance * (1 + rng.uniform(-self.camera_distance, self.camera_distance))
        cam.elevation = contract.elevation + rng.uniform(-self.camera_deg, self.camera_deg)
        cam.azimuth = contract.azimuth + rng.uniform(-self.camera_deg, self.camera_deg)
        r.lookat_offset = rng.uniform(-self.lookat_m, self.lookat_m, 3)
        drawn = {"light": k, "elevation": float(cam.elevation), "azimuth": float(cam.azimuth)}
        if self.floor and r.floor_texture() is not None:
            grey_d, grey_l = rng.uniform(0, 90), rng.uniform(150, 255)
            dark = np.clip(grey_d + rng.uniform(-15, 15, 3), 0, 255)
            light = np.clip(grey_l + rng.uniform(-25, 25, 3), 0, 255)
            r.set_floor_colours(dark, light)
            drawn["floor"] = (dark.round().tolist(), light.round().tolist())
        return drawn
