"""``rlpf score`` / ``rlpf track`` with ``--backend`` and ``--address`` (in process, a local Ray of 2 CPUs)."""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

from rlpf.cli import main
from rlpf.cli.score import EXAMPLES_DIR

ray = pytest.importorskip("ray")

CLIPS = [os.path.join(EXAMPLES_DIR, name) for name in ("ant_valid.npz", "ant_float.npz", "pusher_valid.npz")]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:  # bound, then released: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["score", "track"])
def test_unknown_backend_is_a_one_line_error_listing_them(command, capsys):
    assert main([command, CLIPS[0], "--backend", "foo", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "foo" in err and "local" in err and "ray" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["score", "track"])
def test_unreachable_address_is_named_within_seconds(command, capsys):
    address = f"127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    args = [command, CLIPS[0], "--backend", "ray", "--address", address, "--quiet"]
    assert main(args + (["--tracker", "pd"] if command == "score" else [])) == 2
    assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err
    assert address in err and "Traceback" not in err


def test_address_without_ray_backend_is_refused(capsys):
    assert main(["track", CLIPS[0], "--address", "127.0.0.1:6379", "--quiet"]) == 2
    assert "--backend ray" in capsys.readouterr().err


def test_score_and_track_give_the_same_reports_on_ray(local_ray, tmp_path):
    for command in ("score", "track"):
        reports = {}
        for backend in ("local", "ray"):
            out = tmp_path / f"{command}-{backend}.json"
            extra = ["--tracker", "pd"] if command == "score" else ["--workers", "2"]
            assert main([command, *CLIPS, "--backend", backend, "--out", str(out), "--quiet", *extra]) == 0
            reports[backend] = json.loads(out.read_text())
        assert len(reports["local"]["clips"]) == len(CLIPS)
        assert reports["ray"] == reports["local"], command
