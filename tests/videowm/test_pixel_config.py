"""``PixelConfig``: the reward weights are checked before any stage runs (tests/videowm/test_pixel_pipeline.py
sees them reach the RLPF stage)."""
from __future__ import annotations

import pytest

from rlpf.core.config import ConfigError, load_config
from rlpf.videowm.pipeline import PixelConfig


def test_default_reward_weighs_tracking_and_alignment_alike():
    cfg = PixelConfig()
    assert cfg.weights == {"tracking_success": 10.0, "alignment": 10.0}
    assert load_config(PixelConfig, None, ["weights.alignment=2"]).weights["alignment"] == 2.0


@pytest.mark.parametrize("overrides, field", [
    (["weights={}"], "weights"),
    (["weights.alignment=nan"], "weights.alignment"),
    (["weights.no_such_term=1"], "weights.no_such_term"),
])
def test_bad_weights_are_refused_by_name(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(PixelConfig, None, overrides)
