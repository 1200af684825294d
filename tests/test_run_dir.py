"""Run directories: a config written once, a different one refused, fields introduced later read as what old runs did."""
from dataclasses import dataclass, field

import pytest
import yaml

from rlpf.config import ConfigError
from rlpf.run_dir import claim_run_dir, config_changes


@dataclass
class Inner:
    steps: int = 4
    new_switch: bool = True


@dataclass
class Outer:
    lr: float = 0.1
    inner: Inner = field(default_factory=Inner)


def test_same_config_resumes_and_a_different_one_is_refused(tmp_path):
    claim_run_dir(Outer(), str(tmp_path))
    assert claim_run_dir(Outer(), str(tmp_path)) == {}
    with pytest.raises(ConfigError, match=r"\['lr'\] differ"):
        claim_run_dir(Outer(lr=0.2), str(tmp_path))
    assert claim_run_dir(Outer(lr=0.2), str(tmp_path), may_change=("lr",)) == {"lr": (0.1, 0.2)}


def test_a_field_missing_from_an_old_run_reads_as_what_that_run_did(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"lr": 0.1, "inner": {"steps": 4}}))
    introduced = {"inner.new_switch": False}
    # without the declaration the old run differs from any config that has the field
    assert set(config_changes(Outer(inner=Inner(new_switch=False)), str(tmp_path))) == {"inner"}
    assert config_changes(Outer(inner=Inner(new_switch=False)), str(tmp_path), introduced) == {}
    with pytest.raises(ConfigError, match="inner"):  # the new default does something the old run did not
        claim_run_dir(Outer(), str(tmp_path), introduced=introduced)
    claim_run_dir(Outer(inner=Inner(new_switch=False)), str(tmp_path), introduced=introduced)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["inner"]["new_switch"] is False
