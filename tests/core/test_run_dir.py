"""Run directories: a config written once, a different one refused, fields introduced later read as what old runs did."""
import os
from dataclasses import dataclass, field

import pytest
import yaml

from rlpf.core.config import ConfigError
from rlpf.core.run_dir import claim_run_dir, config_changes


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


# ---- the run-directory lock ----------------------------------------------------------------------------

HOLDER = """
import sys, time
from rlpf.core.run_dir import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold_lock_in_another_process(run_dir):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_locked_run_directory_is_refused_and_a_dead_owner_leaves_no_stale_lock(tmp_path):
    import signal

    from rlpf.core.run_dir import RunLockedError, run_lock

    proc = _hold_lock_in_another_process(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=rf"in use .*pid/host: {proc.pid} "):
            with run_lock(str(tmp_path)):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding the lock, as a killed run would
        proc.wait()
    with run_lock(str(tmp_path)):  # the kernel released it with the process: not stale
        with run_lock(str(tmp_path)):  # re-entrant within one process
            pass


def test_every_run_command_takes_the_lock_before_any_work(tmp_path, capsys):
    """Two runs into one --out: the second is refused at once and writes nothing into the directory."""
    from rlpf.cli import main

    run = tmp_path / "run"
    proc = _hold_lock_in_another_process(run)
    try:
        before = sorted(os.listdir(run))
        for cmd in (["pretrain"], ["train"], ["train-tracker"], ["control"]):
            assert main([*cmd, "--out", str(run), "--quiet"]) == 2, cmd
            assert "in use" in capsys.readouterr().err
        assert sorted(os.listdir(run)) == before == [".lock"]
    finally:
        proc.kill()
        proc.wait()
