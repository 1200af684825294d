"""BVH motion files: a parser of our own (HIERARCHY / MOTION), forward kinematics to joint positions,
and a writer.

The format (Biovision hierarchy): a joint tree, each joint with an ``OFFSET`` from its parent (in the
parent's frame at rest) and a list of ``CHANNELS``; then ``Frames: N``, ``Frame Time: dt`` and one
line of numbers per frame, the channels of every joint in the order the hierarchy lists them.

Conventions (those of Blender's importer, so files round-trip through standard tools):

- A joint's rotation channels, in the order listed, compose left to right: ``Zrotation Xrotation
  Yrotation`` is ``R = Rz(a) @ Rx(b) @ Ry(c)`` (intrinsic z-x'-y'' Euler angles), in degrees; its
  frame in the world is ``R_parent @ R``.
- A joint with position channels has them as its full position in the parent's frame (they replace
  its ``OFFSET``, which is then the rest value); a joint without them sits at its ``OFFSET``.
- Units are whatever the file uses (cm, inches, m): ``rlpf import`` rescales by skeleton height, so
  only ratios matter. The up axis is not stored in a BVH; it is ``--up`` (y for almost every file).

Nothing here evaluates or unpickles anything: the file is read as text, token by token, and every
problem is a ``BVHError`` naming the file and the line.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from rlpf.core.clips import MAX_FRAMES
from rlpf.core.errors import RLPFError

CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
"""Channel names BVH allows (matched case-insensitively)."""
MAX_JOINTS = 1000
"""Most joints accepted: real skeletons have 20-100 (hands included); more is not a motion file."""
MAX_BYTES = 512 << 20
"""Largest BVH file read (10,000 frames of 100 joints x 6 channels at ~10 bytes a number is ~60 MB)."""


class BVHError(RLPFError, ValueError):
    """A BVH file that cannot be read; the message names the file, the line and the problem."""

    def __init__(self, path: str, line: int | None, problem: str):
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")
        self.path, self.line, self.problem = path, line, problem


@dataclass
class BVHJoint:
    name: str
    parent: int
    """Index of the parent joint, -1 for the root."""
    offset: np.ndarray
    """[3] position in the parent's frame at rest (file units)."""
    channels: tuple[str, ...]
    end_site: np.ndarray | None = None
    """[3] offset of the joint's End Site (a bone tip with no channels), if it has one."""


@dataclass
class BVH:
    joints: list[BVHJoint]
    frames: np.ndarray
    """[T, n_channels] channel values per frame, in hierarchy order."""
    frame_time: float
    """Seconds per frame."""
    source: str = "<memory>"
    names: list[str] = field(init=False)

    def __post_init__(self):
        self.names = [j.name for j in self.joints]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


def _tokens(path: str):
    """(token, line number) for every whitespace-separated token; '{' and '}' always stand alone."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            for tok in line.replace("{", " { ").replace("}", " } ").split():
                yield tok, n


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.it = _tokens(path)
        self.line = 0
        self.peeked = None

    def next(self, what: str) -> str:
        if self.peeked is not None:
            tok, self.peeked = self.peeked, None
            return tok
        try:
            tok, self.line = next(self.it)
        except StopIteration:
            raise BVHError(self.path, self.line or None, f"file ends early (truncated?): expected {what}") from None
        return tok

    def peek(self, what: str) -> str:
        if self.peeked is None:
            self.peeked = self.next(what)
        return self.peeked

    def expect(self, word: str) -> None:
        tok = self.next(repr(word))
        if tok.upper() != word.upper():
            raise BVHError(self.path, self.line, f"expected {word!r}, found {tok!r}")

    def number(self, what: str) -> float:
        tok = self.next(what)
        try:
            v = float(tok)
        except ValueError:
            raise BVHError(self.path, self.line, f"expected a number ({what}), found {tok!r}") from None
        if not np.isfinite(v):
            raise BVHError(self.path, self.line, f"{what} is {tok} (not a finite number)")
        return v

    def error(self, problem: str) -> BVHError:
        return BVHError(self.path, self.line, problem)


def _joint(r: _Reader, name: str, parent: int, joints: list[BVHJoint]) -> None:
    r.expect("{")
    r.expect("OFFSET")
    offset = np.array([r.number(f"OFFSET {a} of joint {name!r}") for a in "xyz"])
    r.expect("CHANNELS")
    tok = r.next(f"the channel count of joint {name!r}")
    if not tok.isdigit() or int(tok) > 6:
        raise r.error(f"joint {name!r}: channel count must be 0-6, found {tok!r}")
    channels = []
    for _ in range(int(tok)):
        c = r.next(f"a channel name of joint {name!r}")
        match = [k for k in CHANNELS if k.lower() == c.lower()]
        if not match:
            raise r.error(f"joint {name!r}: unknown channel {c!r} (BVH has {', '.join(CHANNELS)}); "
                          f"is the channel count {tok} right?")
        if match[0] in channels:
            raise r.error(f"joint {name!r}: channel {c!r} listed twice")
        channels.append(match[0])
    index = len(joints)
    if index >= MAX_JOINTS:
        raise r.error(f"more than {MAX_JOINTS} joints")
    joints.append(BVHJoint(name, parent, offset, tuple(channels)))
    while True:
        tok = r.next(f"JOINT, End Site or '}}' closing joint {name!r}")
        if tok == "}":
            return
        if tok.upper() == "JOINT":
            child = r.next("a joint name")
            if child in ("{", "}"):
                raise r.error("JOINT without a name")
            _joint(r, child, index, joints)
        elif any(tok.lower() == c.lower() for c in CHANNELS):
            raise r.error(f"joint {name!r}: channel {tok!r} beyond the {len(channels)} that CHANNELS announces "
                          "(wrong channel count)")
        elif tok.upper() == "END":
            r.expect("Site")
            r.expect("{")
            r.expect("OFFSET")
            joints[index].end_site = np.array([r.number(f"End Site OFFSET {a} of joint {name!r}") for a in "xyz"])
            r.expect("}")
        else:
            raise r.error(f"expected JOINT, End Site or '}}' in joint {name!r}, found {tok!r}")


def load_bvh(path: str, max_frames: int = MAX_FRAMES) -> BVH:
    """Parse a BVH file. Raises BVHError (file and line) for anything malformed: a truncated file, a
    wrong channel count, a frame line with the wrong number of values, non-finite numbers, a bad frame
    time, more than ``max_frames`` frames (the clip limit: checked from the header, before reading them)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BVHError(path, None, "file not found") from None
    except OSError as e:
        raise BVHError(path, None, f"cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BVHError(path, None, "not a regular file")
    if st.st_size > MAX_BYTES:
        raise BVHError(path, None, f"{st.st_size / 2**20:.0f} MiB; at most {MAX_BYTES >> 20} MiB are read")
    r = _Reader(path)
    r.expect("HIERARCHY")
    tok = r.next("ROOT")
    if tok.upper() != "ROOT":
        raise r.error(f"expected ROOT, found {tok!r}")
    joints: list[BVHJoint] = []
    _joint(r, r.next("the root joint's name"), -1, joints)
    tok = r.next("MOTION")
    if tok.upper() == "ROOT":
        raise r.error("a second ROOT: only one skeleton per file is supported")
    if tok.upper() != "MOTION":
        raise r.error(f"expected MOTION after the hierarchy, found {tok!r}")
    r.expect("Frames:")
    tok = r.next("the frame count")
    if not tok.isdigit():
        raise r.error(f"Frames: must be a whole number, found {tok!r}")
    n = int(tok)
    if n < 1:
        raise r.error("Frames: 0 (no motion)")
    if n > max_frames:
        raise r.error(f"{n} frames; at most {max_frames} are accepted (rlpf.core.clips.MAX_FRAMES; split the motion)")
    r.expect("Frame")
    r.expect("Time:")
    frame_time = r.number("the frame time")
    if frame_time <= 0:
        raise r.error(f"Frame Time must be positive seconds, found {frame_time:g}")
    width = sum(len(j.channels) for j in joints)
    frames = np.empty((n, width))
    # frame lines are read line by line: each must hold exactly the hierarchy's channel count
    if r.peeked is not None:
        raise r.error(f"unexpected {r.peeked!r} after the frame time")
    line_no, data_line = r.line, None
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        t = 0
        for k, line in enumerate(f, 1):
            if k <= line_no:
                if k == line_no:  # anything after "Frame Time: x" on its own line
                    rest = line.split(":", 1)[-1].split()[1:]
                    if rest:
                        raise BVHError(path, k, f"unexpected {rest[0]!r} after the frame time")
                continue
            vals = line.split()
            if not vals:
                continue
            if t >= n:
                raise BVHError(path, k, f"more frame lines than the {n} the header says")
            if len(vals) != width:
                raise BVHError(path, k, f"frame {t} has {len(vals)} values but the hierarchy has {width} channels")
            try:
                row = [float(v) for v in vals]
            except ValueError:
                bad = next(v for v in vals if not _is_float(v))
                raise BVHError(path, k, f"frame {t}: {bad!r} is not a number") from None
            frames[t] = row
            if not np.isfinite(frames[t]).all():
                c = int(np.argmin(np.isfinite(frames[t])))
                raise BVHError(path, k, f"frame {t}: channel {c} is {vals[c]} (not a finite number)")
            t += 1
            data_line = k
        if t < n:
            raise BVHError(path, data_line or line_no, f"file ends after {t} of the {n} frames the header says (truncated?)")
    return BVH(joints, frames, frame_time, source=path)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _euler_order(channels: tuple[str, ...]) -> str:
    return "".join(c[0] for c in channels if c.endswith("rotation"))


def forward_kinematics(bvh: BVH) -> tuple[np.ndarray, np.ndarray]:
    """World positions [T, J, 3] and rotations [T, J, 3, 3] of every joint (file units and axes)."""
    T, J = bvh.n_frames, len(bvh.joints)
    pos = np.zeros((T, J, 3))
    rot = np.zeros((T, J, 3, 3))
    col = 0
    for j, joint in enumerate(bvh.joints):
        ch = bvh.frames[:, col:col + len(joint.channels)]
        col += len(joint.channels)
        local_t = np.broadcast_to(joint.offset, (T, 3)).copy()
        for k, c in enumerate(joint.channels):  # position channels replace the offset (Blender's rule)
            if c.endswith("position"):
                local_t[:, "XYZ".index(c[0])] = ch[:, k]
        order = _euler_order(joint.channels)
        if order:
            angles = ch[:, [k for k, c in enumerate(joint.channels) if c.endswith("rotation")]]
            local_r = Rotation.from_euler(order, angles, degrees=True).as_matrix()  # upper case: intrinsic
        else:
            local_r = np.broadcast_to(np.eye(3), (T, 3, 3))
        if joint.parent < 0:
            pos[:, j], rot[:, j] = local_t, local_r
        else:
            pr = rot[:, joint.parent]
            pos[:, j] = pos[:, joint.parent] + np.einsum("tij,tj->ti", pr, local_t)
            rot[:, j] = pr @ local_r
    return pos, rot


def write_bvh(path: str, bvh: BVH, precision: int = 6) -> str:
    """The BVH file text of ``bvh``, written atomically to ``path`` (through ``rlpf.core.outputs``)."""
    from rlpf.core.outputs import write_text

    return write_text(path, bvh_text(bvh, precision))


def bvh_text(bvh: BVH, precision: int = 6) -> str:
    children: dict[int, list[int]] = {}
    for j, joint in enumerate(bvh.joints):
        children.setdefault(joint.parent, []).append(j)
    if len(children.get(-1, [])) != 1:
        raise ValueError("bvh_text: a BVH holds exactly one root joint")
    fmt = f"{{:.{precision}f}}"
    out = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        joint, pad = bvh.joints[j], "  " * depth
        out.append(f"{pad}{'ROOT' if joint.parent < 0 else 'JOINT'} {joint.name}")
        out.append(pad + "{")
        out.append(f"{pad}  OFFSET " + " ".join(fmt.format(v) for v in joint.offset))
        out.append(f"{pad}  CHANNELS {len(joint.channels)} " + " ".join(joint.channels))
        for c in children.get(j, []):
            emit(c, depth + 1)
        if joint.end_site is not None:
            out.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET " + " ".join(fmt.format(v) for v in joint.end_site), f"{pad}  }}"])
        out.append(pad + "}")

    # BVH stores channels in hierarchy (depth-first) order: the joints must already be in it
    order = []
    stack = [children[-1][0]]
    while stack:
        j = stack.pop()
        order.append(j)
        stack += reversed(children.get(j, []))
    if order != list(range(len(bvh.joints))):
        raise ValueError("bvh_text: joints must be listed depth-first (parents before children, subtrees contiguous)")
    emit(order[0], 0)
    out += ["MOTION", f"Frames: {bvh.n_frames}", f"Frame Time: {bvh.frame_time:.8f}"]
    out += [" ".join(fmt.format(v) for v in row) for row in bvh.frames]
    return "\n".join(out) + "\n"
