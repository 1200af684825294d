"""rlpf train end to end on a tiny base model: TRL GRPO updates, rewards logged, resume, faults."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from rlpf.cli import main
from rlpf.core.config import ConfigError, load_config
from rlpf.finetune.pipeline import RLPFConfig, train_rlpf
from rlpf.finetune.feedback import FeedbackError, PhysicalFeedback
from rlpf.worldmodel.pretrain import PretrainConfig, pretrain

from test_pretrain import TINY

HERE = os.path.dirname(os.path.dirname(__file__))  # tests/
GRPO_TINY = ["grpo.steps=4", "grpo.prompts_per_step=3", "grpo.num_generations=2", "grpo.steps_per_generation=1",
             "grpo.save_steps=2", "grpo.learning_rate=0.001", "grpo.warmup_steps=0", "eval_per_prompt=2",
             "eval_trackers=[pd]", "videos=1",
             # a continuous term: a tiny model's groups often tie on the binary ones, leaving no advantage
             "weights={tracking_success: 10, alignment: 2, tracking_error_m: -10}"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny pretrained ant world model and its pretraining config file."""
    root = tmp_path_factory.mktemp("rlpf")
    overrides = TINY + [f"data={root / 'data'}"]
    pcfg = load_config(PretrainConfig, None, overrides)
    pretrain(pcfg, str(root / "base"), progress=False)
    cfg_path = root / "pretrain.yaml"
    cfg_path.write_text(yaml.safe_dump({o.split("=", 1)[0]: yaml.safe_load(o.split("=", 1)[1]) for o in overrides}))
    return root


def rlpf_overrides(base, extra=()):
    return [f"base_run={base / 'base'}", f"pretrain_config={base / 'pretrain.yaml'}", *GRPO_TINY, *extra]


def lm_state(path):
    from rlpf.worldmodel.model import WorldModel

    return {k: v.clone() for k, v in WorldModel.from_pretrained(path).lm.state_dict().items()}


def tb_scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir)
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def run(base):
    cfg = load_config(RLPFConfig, None, rlpf_overrides(base))
    out = base / "rlpf"
    report = train_rlpf(cfg, str(out), progress=False)
    return out, report


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_rlpf_updates_the_model_and_reports_before_after(base, run):
    out, report = run
    before, after = lm_state(base / "base"), lm_state(out / "model")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2, "GRPO left most parameters untouched"
    for side in ("before", "after"):
        m = report[side]
        for key in ("tracking_success", "tracking_success_pd", "plausible_rate", "command_accuracy", "fid", "diversity"):
            assert m[key] is not None and np.isfinite(m[key]), (side, key)
        assert {"skate_mps", "float_m", "root_residual_bw"} <= set(m["physics"])
    on_disk = json.loads((out / "report.json").read_text())
    assert set(on_disk["before"]) >= {"tracking_success", "physics"} and on_disk["method"] == "rlpf"
    assert "| tracking_success |" in (out / "report.md").read_text()
    for name in ("base", "rlpf"):
        assert (out / "samples" / f"{name}.npz").exists()
    assert len(report["videos"]) == 2 and all((out / v).stat().st_size > 1000 for v in report["videos"])
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == "rlpf"


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_every_reward_term_is_its_own_series_and_the_total_is_their_weighted_sum(run):
    out, report = run
    scalars = tb_scalars(str(out / "tb" / "rlpf"))
    for term in ("tracking_success", "alignment", "tracking_error_m", "skate_mps"):
        assert f"train/rewards/{term}/mean" in scalars, sorted(scalars)
    for part in ("generation_s", "scoring_s", "update_s"):
        assert f"train/time/{part}" in scalars
    # TRL optimizes sum(weight * term): the logged reward is 10 x tracking + 2 x alignment - 10 x error
    total = np.array(scalars["train/reward"])
    expected = (10 * np.array(scalars["train/rewards/tracking_success/mean"])
                + 2 * np.array(scalars["train/rewards/alignment/mean"])
                - 10 * np.array(scalars["train/rewards/tracking_error_m/mean"]))
    np.testing.assert_allclose(total, expected, atol=1e-4)
    assert report["training"]["steps"] == 4 and 0 <= report["training"]["scoring_fraction"] <= 1


def files_of(root):
    """{relative path: (mtime_ns, sha256)} of every file under ``root`` but the run lock (bookkeeping
    of who runs there, touched by every run)."""
    import hashlib

    import rlpf.core.run_dir

    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name == getattr(rlpf.core.run_dir, "LOCK_FILE", None):
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = (os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return out


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_rerun_of_a_finished_run_is_cached_and_another_config_is_refused(base, run, monkeypatch):
    import rlpf.finetune.grpo
    import rlpf.finetune.report

    out, report = run
    before = files_of(out)

    def fail(*args, **kwargs):
        raise AssertionError("a finished run must not train or evaluate again")

    for module, name in ((rlpf.finetune.grpo, "finetune"), (rlpf.finetune.report, "measure"), (rlpf.finetune.report, "render_videos")):
        monkeypatch.setattr(module, name, fail)
    cfg = load_config(RLPFConfig, None, rlpf_overrides(base))
    again = train_rlpf(cfg, str(out), progress=False)
    assert again == json.loads((out / "report.json").read_text())
    assert again["method"] == "rlpf" and again["training"]["steps"] == report["training"]["steps"] == 4
    assert files_of(out) == before, "a rerun of a finished run wrote into its run directory"
    with pytest.raises(ConfigError, match="different config"):
        train_rlpf(load_config(RLPFConfig, None, rlpf_overrides(base, ["grpo.beta=0.5"])), str(out), progress=False)


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_a_failing_plugin_excludes_samples_and_training_goes_on(base, tmp_path, caplog):
    sys.path.insert(0, HERE)
    weights = "weights={tracking_success: 10, tracking_error_m: -10, 'rlpf_plugins:flaky': 1}"
    cfg = load_config(RLPFConfig, None, rlpf_overrides(base, [weights, "grpo.steps=2", "videos=0"]))
    with caplog.at_level("WARNING", logger="rlpf.feedback"):
        report = train_rlpf(cfg, str(tmp_path / "run"), progress=False)
    assert report["training"]["excluded_samples"] > 0
    assert "excluded" in caplog.text
    assert report["training"]["steps"] == 2
    scalars = tb_scalars(str(tmp_path / "run" / "tb" / "rlpf"))
    assert max(scalars["train/rewards/excluded_samples"]) > 0


def test_completions_that_are_not_clips_are_excluded(base):
    from rlpf.worldmodel.model import WorldModel

    wm = WorldModel.from_pretrained(str(base / "base"))
    good = list(range(wm.code_offset, wm.code_offset + wm.n_tokens))
    with PhysicalFeedback("ant", workers=0) as fb:
        out = fb.score_completions(wm, ["walk forward <motion>"] * 3, [good, good[:-1], [0] * wm.n_tokens])
    assert set(out["errors"]) == {1, 2}
    assert np.isfinite(out["terms"]["tracking_success"][0])
    assert all(np.isnan(out["terms"][t][i]) for t in out["terms"] for i in (1, 2))
    assert fb.excluded_total == 2


def test_a_batch_scored_ahead_in_the_workers_matches_one_scored_in_turn(base):
    from rlpf.worldmodel.model import WorldModel

    wm = WorldModel.from_pretrained(str(base / "base"))
    rng = np.random.default_rng(0)
    completions = [[int(t) for t in rng.integers(wm.code_offset, wm.code_offset + wm.n_codes, wm.n_tokens)]
                   for _ in range(6)]
    completions[3] = completions[3][:-1]  # not a clip
    prompts = [wm.prompt_text(p) for p in wm.prompts[:2]] * 3
    with PhysicalFeedback("ant", workers=0) as in_turn, PhysicalFeedback("ant", workers=1, chunk=2) as ahead:
        want = in_turn.score_completions(wm, prompts, completions)
        ahead.prefetch(wm, prompts, completions)
        got = ahead.score_completions(wm, prompts, completions)
        assert ahead.score_completions(wm, prompts, completions) is got  # every reward function asks once more
    assert set(got["errors"]) == set(want["errors"]) == {3}
    np.testing.assert_equal(got["terms"], want["terms"])
    assert ahead.excluded_total == 1 and ahead.work_seconds > 0


def test_a_dying_scoring_worker_excludes_its_samples_and_fresh_workers_score_the_next_batch(base, caplog):
    from rlpf.worldmodel.model import WorldModel

    sys.path.insert(0, HERE)
    wm = WorldModel.from_pretrained(str(base / "base"))
    good = list(range(wm.code_offset, wm.code_offset + wm.n_tokens))
    prompts = [wm.prompt_text(wm.prompts[0])] * 6
    weights = {"tracking_success": 10.0, "rlpf_plugins:dies_on_completion_2": 0.0}
    with PhysicalFeedback("ant", weights, workers=2, chunk=2) as fb, caplog.at_level("WARNING", logger="rlpf.feedback"):
        fb.prefetch(wm, prompts, [good] * 6)
        out = fb.score_completions(wm, prompts, [good] * 6)
        # only the dead worker's chunk (completions 2, 3) is excluded: the other worker's chunk in
        # flight (0, 1) and the chunk still queued (4, 5) are scored
        assert set(out["errors"]) == {2, 3} and "worker process died" in out["errors"][2]
        assert np.isfinite([out["terms"]["tracking_success"][i] for i in (0, 1, 4, 5)]).all()
        assert "excluded" in caplog.text and fb._pool.restarts == 1
        again = fb.score_completions(wm, prompts[:2], [good, list(reversed(good))])
    assert again["errors"] == {} and np.isfinite(again["terms"]["tracking_success"]).all()


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_scoring_ahead_first_batch_is_the_in_turn_one_then_samples_are_one_batch_old(base, run, tmp_path):
    """Both modes sample the first batch from the same policy and RNG state, so the first generated
    batch's updates agree; scored ahead, the next batch was sampled before those updates, so the runs part."""
    from transformers import LlamaForCausalLM

    cfg = load_config(RLPFConfig, None, rlpf_overrides(base, ["grpo.overlap_scoring=false", "videos=0",
                                                              "eval_per_prompt=1", "workers=0"]))
    train_rlpf(cfg, str(tmp_path / "in-turn"), progress=False)
    ahead_dir, in_turn_dir = run[0] / "grpo", tmp_path / "in-turn" / "grpo"
    first = [LlamaForCausalLM.from_pretrained(d / "checkpoint-2").state_dict() for d in (ahead_dir, in_turn_dir)]
    for k in first[0]:
        torch.testing.assert_close(first[0][k], first[1][k], atol=1e-5, rtol=1e-4, msg=f"{k} after the first batch")
    assert (ahead_dir / "checkpoint-2" / "pending_batch.pt").exists()
    assert not (in_turn_dir / "checkpoint-2" / "pending_batch.pt").exists()
    a, b = lm_state(run[0] / "model"), lm_state(tmp_path / "in-turn" / "model")
    assert any(not torch.allclose(a[k], b[k], atol=1e-5) for k in a), "the second batch should differ"


def test_bad_reward_configs_fail_before_training():
    with pytest.raises(FeedbackError, match="no_such_term"):
        PhysicalFeedback("ant", {"no_such_term": 1.0}, workers=0)
    with pytest.raises(FeedbackError, match="finite"):
        PhysicalFeedback("ant", {"tracking_success": float("nan")}, workers=0)
    with pytest.raises(FeedbackError, match="unknown tracker"):
        PhysicalFeedback("ant", tracker="nope", workers=0)
    with pytest.raises(ValueError, match="method"):
        RLPFConfig(method="dpo")
    with pytest.raises(ValueError, match="num_generations"):
        load_config(RLPFConfig, None, ["grpo.num_generations=1"])


def test_cli_train_reports_errors_with_exit_code_2(base, tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "r"), "--quiet", *rlpf_overrides(base, ["weights={nope: 1}"])])
    assert code == 2 and "nope" in capsys.readouterr().err
    code = main(["train", "--out", str(tmp_path / "r2"), "--quiet", "method=magic"])
    assert code == 2 and "method" in capsys.readouterr().err


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_killed_or_interrupted_run_resumes_to_the_same_parameters(base, tmp_path):
    """SIGKILL mid-run, then the same command: it continues from the last checkpoint and ends where an
    uninterrupted run ends (bit-identical parameters). Ctrl-C: a checkpoint first, then the same.
    tests/test_resume.py interrupts longer runs at several points."""
    args = rlpf_overrides(base, ["weights={tracking_success: 10, tracking_error_m: -10, 'rlpf_plugins:kill_switch': 0}",
                                 "workers=0", "videos=0", "eval_per_prompt=1"])
    # one torch thread in every run: another thread count may change float reductions (another run)
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", ""), "RLPF_THREADS": "1"}

    def rlpf_train(out, kill_at=None, sig="KILL", extra=()):
        e = dict(env)
        if kill_at:
            e["RLPF_TEST_KILL_AT"], e["RLPF_TEST_SIGNAL"] = str(kill_at), sig
        return subprocess.run([sys.executable, "-m", "rlpf.cli", "train", "--quiet", "--out", str(out), *args, *extra],
                              env=e, capture_output=True, text=True, timeout=600)

    straight = rlpf_train(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = rlpf_train(tmp_path / "killed", kill_at=2)  # 2nd batch, generated in step 3 (num_iterations 2)
    assert killed.returncode == -9
    assert (tmp_path / "killed" / "grpo" / "checkpoint-2").is_dir() and not (tmp_path / "killed" / "model").exists()
    resumed = rlpf_train(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = lm_state(tmp_path / "straight" / "model"), lm_state(tmp_path / "killed" / "model")
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs after resume: max |diff| {(a[k] - b[k]).abs().max():.3g}"

    # Ctrl-C during step 3: the checkpoint waits for the end of that generated batch (step 4), exit 130,
    # and the same command finishes the run
    stopped = rlpf_train(tmp_path / "ctrl-c", kill_at=2, sig="INT", extra=["grpo.steps=6"])
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert (tmp_path / "ctrl-c" / "grpo" / "checkpoint-4").is_dir() and not (tmp_path / "ctrl-c" / "model").exists()
    assert rlpf_train(tmp_path / "ctrl-c", extra=["grpo.steps=6"]).returncode == 0
    assert json.loads((tmp_path / "ctrl-c" / "report.json").read_text())["training"]["steps"] == 6


@pytest.mark.parametrize("name", ["rlpf_ant", "rlpf_ant_in_turn", "base_ant", "sft_filter_ant", "rlpf_ant_no_alignment", "rlpf_ant_no_kl",
                                  "rlpf_ant_no_alignment_no_kl", "rlpf_ant_learned_reward", "rlpf_pusher"])
def test_experiment_configs_load(name):
    cfg = load_config(RLPFConfig, os.path.join(HERE, "..", "experiments", "configs", f"{name}.yaml"))
    assert cfg.trackers()[0] == cfg.tracker and cfg.world in ("ant", "pusher")
    if name == "rlpf_ant_learned_reward":
        assert cfg.trackers() == ["learned", "pd"]


# ---------------------------------------------------------------------------------------------------
# the training step in the plugin context; trackers given as run directories; the other methods


@pytest.fixture(scope="module")
def tracker_run(tmp_path_factory):
    """A learned ant tracker trained for 256 steps on a 6-clip library (its run directory)."""
    from rlpf.core.clips import save_clips
    from rlpf.policies.learned_tracker import TrackerTrainConfig, train_tracker
    from rlpf.policies.scripted import SmoothRandom
    from rlpf.data.simulate import simulate

    root = tmp_path_factory.mktemp("tracker")
    save_clips(str(root / "lib" / "ant.npz"), [simulate("ant", SmoothRandom(0.5), 40, seed=s) for s in range(6)])
    cfg = TrackerTrainConfig(data=str(root / "lib"), val_fraction=0.34, total_timesteps=256, n_envs=2, vec_env="dummy",
                             n_steps=64, batch_size=64, n_epochs=1, net_arch=[32, 32], checkpoint_every=128,
                             eval_clips=1)
    train_tracker(cfg, str(root / "run"), progress=False)
    return str(root / "run")


def test_plugins_get_the_step_of_trls_trainer_state_in_the_workers_and_here(base):
    from transformers import TrainerState

    from rlpf.worldmodel.model import WorldModel

    sys.path.insert(0, HERE)
    wm = WorldModel.from_pretrained(str(base / "base"))
    rng = np.random.default_rng(1)
    batches = [[[int(t) for t in rng.integers(wm.code_offset, wm.code_offset + wm.n_codes, wm.n_tokens)]
                for _ in range(4)] for _ in range(3)]
    prompts = [wm.prompt_text(wm.prompts[0])] * 4
    weights = {"tracking_success": 10.0, "rlpf_plugins:step_seen": 1.0}
    for workers in (0, 1):
        with PhysicalFeedback("ant", weights, workers=workers, chunk=2) as fb:
            funcs, _ = fb.reward_functions(wm)
            (seen,) = [f for f in funcs if f.__name__ == "rlpf_plugins.step_seen"]
            # in turn: TRL calls every reward function with its trainer_state
            assert seen(prompts, None, batches[0], trainer_state=TrainerState(global_step=6)) == [6.0] * 4
            # scored ahead: the step the batch was sampled at, even when TRL asks later
            state = TrainerState(global_step=8)
            fb.prefetch(wm, prompts, batches[1], trainer_state=state, step=8)
            state.global_step = 10
            assert seen(prompts, None, batches[1], trainer_state=state) == [8.0] * 4
            # outside training (rlpf score, a plain score call): no step in the context
            assert fb.score_completions(wm, prompts, batches[2])["terms"]["rlpf_plugins:step_seen"] == [-1.0] * 4


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_rlpf_train_with_a_tracker_run_dir_passes_the_training_step_to_plugins(base, tracker_run, tmp_path):
    """`tracker=RUN_DIR` as in `rlpf score --tracker RUN_DIR`; a plugin weighted in the reward sees the
    step of each generated batch (scored ahead in a worker: the first two batches are sampled at step 0,
    the third at step 2)."""
    sys.path.insert(0, HERE)
    weights = "weights={tracking_success: 10, tracking_error_m: -10, 'rlpf_plugins:step_seen': 1}"
    out = tmp_path / "run"
    code = main(["train", "--quiet", "--out", str(out),
                 *rlpf_overrides(base, [weights, f"tracker={tracker_run}", "eval_trackers=[pd]", "grpo.steps=6",
                                        "grpo.save_steps=6", "videos=0", "eval_per_prompt=1", "workers=1"])])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reward_tracker"] == tracker_run and report["eval_trackers"] == [tracker_run, "pd"]
    assert report["after"][f"tracking_success_{tracker_run}"] is not None
    scalars = tb_scalars(str(out / "tb" / "rlpf"))
    assert scalars["train/rewards/rlpf_plugins.step_seen/mean"] == [0.0, 0.0, 2.0]


def test_tracker_run_dirs_are_checked_when_the_config_is_made(tracker_run, tmp_path):
    from rlpf.judge.tracking import TrackerError

    cfg = RLPFConfig(tracker=tracker_run, eval_trackers=["pd", tracker_run])
    assert cfg.trackers() == [tracker_run, "pd"] and cfg.tracker_spec(tracker_run) == tracker_run
    with pytest.raises(TrackerError, match="tracker: unknown tracker 'nope': choose a registered tracker"):
        RLPFConfig(tracker="nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrackerError, match=f"eval_trackers: .*{tmp_path / 'empty'}.*no config.yaml"):
        RLPFConfig(eval_trackers=["pd", str(tmp_path / "empty")])
    with pytest.raises(TrackerError, match="trained for world 'ant'"):
        RLPFConfig(world="pusher", tracker=tracker_run, eval_trackers=["pd"])
    code = main(["train", "--out", str(tmp_path / "r"), "--quiet", f"tracker={tmp_path / 'empty'}"])
    assert code == 2 and not (tmp_path / "r" / "config.yaml").exists()


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_method_sft_filter_end_to_end(base, tmp_path):
    out = tmp_path / "sft"
    code = main(["train", "--quiet", "--out", str(out),
                 *rlpf_overrides(base, ["method=sft_filter", "sft.samples_per_prompt=4", "sft.steps=4", "sft.batch=4",
                                        "sft.learning_rate=0.001", "videos=0", "eval_per_prompt=1", "workers=0"])])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "sft_filter" and report["reward_tracker"] == "pd"
    t = report["training"]
    assert t["candidates"] == 4 * len(t["kept_per_prompt"]) and 0 < t["kept"] <= t["candidates"]
    assert t["kept_fraction"] == pytest.approx(t["kept"] / t["candidates"]) and np.isfinite(t["final_loss"])
    before, after = lm_state(base / "base"), lm_state(out / "model")
    assert any(not torch.equal(before[k], after[k]) for k in before), "SFT-Filter left the model untouched"
    assert (out / "samples" / "sft_filter.npz").exists() and "# sft_filter: before / after" in (out / "report.md").read_text()


@pytest.mark.slow  # an end-to-end `rlpf train` run: `make test-fast` leaves it out
def test_method_base_reports_the_base_model_twice(base, tmp_path):
    out = tmp_path / "base-only"
    code = main(["train", "--quiet", "--out", str(out),
                 *rlpf_overrides(base, ["method=base", "videos=1", "eval_per_prompt=1", "workers=0"])])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "base" and report["training"] == {}
    # the same model sampled with the same seed: every number agrees and every change is 0
    assert report["after"] == report["before"]
    assert report["change"] and all(v == 0 for v in report["change"].values())
    assert not (out / "model").exists() and not (out / "grpo").exists()
    assert report["samples"] == {"base": "samples/base.npz"} and len(report["videos"]) == 1


def test_a_tracker_registered_in_a_script_scores_in_the_workers(base):
    """A tracker registered only in this process (as a script would) reaches the scoring workers,
    which never saw this registry: they rebuild it from its spec and score what it scores here."""
    from rlpf.judge.tracking import register_tracker, unregister_tracker
    from rlpf.policies.pd_tracker import PDTracker
    from rlpf.worldmodel.model import WorldModel

    wm = WorldModel.from_pretrained(str(base / "base"))
    good = list(range(wm.code_offset, wm.code_offset + wm.n_tokens))
    prompts = [wm.prompt_text(wm.prompts[0])] * 4
    completions = [good, list(reversed(good))] * 2
    # an impossible threshold: every clip fails, which the default PD tracker would not say
    register_tracker("t_script_strict", lambda world: PDTracker(world, threshold_m=1e-6))
    try:
        weights = {"tracking_success": 10.0, "tracking_error_m": -1.0}
        with PhysicalFeedback("ant", weights, tracker="t_script_strict", workers=2, chunk=2) as fb:
            out = fb.score_completions(wm, prompts, completions)
        with PhysicalFeedback("ant", weights, tracker="t_script_strict", workers=0) as fb:
            here = fb.score_completions(wm, prompts, completions)
    finally:
        unregister_tracker("t_script_strict")
    assert out["errors"] == {} and out["terms"]["tracking_success"] == [0.0] * 4
    np.testing.assert_equal(out["terms"], here["terms"])


def test_an_unknown_tracker_is_refused_when_the_feedback_is_made():
    with pytest.raises(FeedbackError, match="unknown tracker 'no-such-tracker'"):
        PhysicalFeedback("ant", {"tracking_success": 1.0}, tracker="no-such-tracker")
