import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
"""CI (CI=true, as GitHub Actions and most CI services set it) provides headless OpenGL (EGL), so
there a test that cannot render fails; elsewhere it skips and says why."""


def rendering_unavailable(error) -> None:
    """Skip (or, in CI, fail) a test because offscreen rendering does not work here."""
    why = f"no offscreen OpenGL rendering with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {error}"
    if IN_CI:
        pytest.fail(f"{why} (CI=true: rendering must work; MUJOCO_GL=egl needs libEGL, osmesa needs libOSMesa)",
                    pytrace=False)
    pytest.skip(f"{why} (skipped because CI is not set; with CI=true this fails)")


@pytest.fixture(scope="session")
def no_rendering():
    """``no_rendering(error)``: skip the test, or fail it in CI (see ``rendering_unavailable``)."""
    return rendering_unavailable


@pytest.fixture(scope="session")
def valid_clips():
    """Physically valid clips simulated in each world (short, made once per test session)."""
    from rlpf.policies.scripted import PusherScript, SmoothRandom
    from rlpf.data.simulate import simulate

    return {
        "ant": [simulate("ant", SmoothRandom(0.6), 80, seed=s) for s in (3, 4)],
        "humanoid": [simulate("humanoid", SmoothRandom(0.5), 100, seed=s) for s in (3, 4)],
        "pusher": [simulate("pusher", PusherScript(), 80, seed=s) for s in (3, 4)],
    }


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# The tests mirror the package (tests/core, tests/worldmodel, ...), and a few share helpers across
# folders by module name (`from test_pretrain import TINY`, `from payloads import torch_file`): every
# folder is importable, as pytest's default rootdir-relative mode makes the folder of each test it
# collects, so such an import does not depend on which files were collected first.
import sys  # noqa: E402

_TESTS = os.path.dirname(os.path.abspath(__file__))
for _d in sorted(os.listdir(_TESTS)):
    if os.path.isdir(os.path.join(_TESTS, _d)) and not _d.startswith(("_", ".")) and os.path.join(_TESTS, _d) not in sys.path:
        sys.path.insert(0, os.path.join(_TESTS, _d))


@pytest.fixture(scope="session")
def multiworld_pretrain(tmp_path_factory):
    """A tiny multi-world `rlpf pretrain` run on push-v3 and drawer-open-v3 (real expert clips), made
    once per session: (root, the data_dirs override); the run is root/"run"."""
    from multiworld_models import DRAWER, PUSH, TINY_PRETRAIN
    from rlpf.cli import main

    root = tmp_path_factory.mktemp("multiworld")
    data = f"data_dirs={{{PUSH}: {root / 'push'}, {DRAWER}: {root / 'drawer'}}}"
    assert main(["pretrain", "--out", str(root / "run"), "--quiet", *TINY_PRETRAIN, data]) == 0
    return root, data
