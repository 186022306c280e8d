"""FedAQT on Flower: the simulation engine (Ray) gives the same model as the in-process
run, the deployment engine (a real SuperLink and two SuperNodes) runs two rounds with a
client dropout counted, runs resume from their last round, bad input is one line, exit 2.

Durations measured on the 2-core machine shared with other jobs: the Ray simulation test
about 37 s (Ray and actor start-up), the deployment test 60–90 s (each ClientApp call is a
fresh process importing torch), resume about 11 s, the bad-input tests well under a second.
"""

import json
import socket

import pytest
import torch

from wrapkit.cli import main
from wrapkit.common.errors import UserError
from wrapkit.fl.client import fedsgd_client
from wrapkit.fl.deploy import deploy_local
from wrapkit.fl.run import FederatedRun
from wrapkit.fl.settings import FlSettings
from wrapkit.fl.task import FlTask, build_model, client_batch

SETTINGS = FlSettings(task=FlTask(num_clients=3), per_round=3, rounds=2, bits="4", lr=0.2)


def _in_process(settings, rounds, out=None, run=None):
    """Drive a FederatedRun without Flower: every client, sorted by id, each round."""
    run = run or FederatedRun(settings, out)
    template = build_model(settings.task.model, settings.task.seed)
    while run.completed < rounds:
        r = run.completed + 1
        sent = run.server.broadcast()
        ups = [fedsgd_client(template, sent, *client_batch(settings.task, c, r,
                                                           settings.batch_size))
               for c in range(settings.task.num_clients)]
        run.finish_round(ups, clients=range(3), sampled=3, failed=0, bytes_down=0, bytes_up=0)
    return run


def test_resume_equals_uninterrupted(tmp_path):
    whole = _in_process(SETTINGS.replace(rounds=3), 3)
    _in_process(SETTINGS, 2, out=tmp_path)
    resumed = FederatedRun(SETTINGS.replace(rounds=3), tmp_path)
    assert resumed.completed == 2
    _in_process(SETTINGS, 3, run=resumed)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(UserError, match="other settings"):
        FederatedRun(SETTINGS.replace(bits="8"), tmp_path)


def test_simulation_engine_equals_in_process_run(tmp_path, capsys):
    torch.set_num_threads(1)
    rc = main(["fl", "--clients", "3", "--per-round", "3", "--rounds", "2", "--bits", "4",
               "--lr", "0.2", "--out", str(tmp_path / "sim")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rounds_completed"] == 2 and summary["client_replies"] == 6
    assert summary["client_failures"] == 0
    report = json.loads((tmp_path / "sim" / "report.json").read_text())
    assert [e["clients"] for e in report["history"]] == [[0, 1, 2], [0, 1, 2]]
    # codes of 4-bit weights travel as int8: one byte per weight, plus float32 scales/biases
    assert report["history"][0]["bytes_down_per_client"] == (64 * 32 + 32 * 10) + 4 * (32 + 10) * 2
    state = torch.load(tmp_path / "sim" / "model.pt", weights_only=False)["state_dict"]
    ref = _in_process(SETTINGS, 2)
    for name, p in ref.model.state_dict().items():
        assert torch.equal(state[name], p), name


def test_deployment_engine_superlink_and_two_supernodes(tmp_path, capsys):
    rc = main(["fl", "--engine", "deployment", "--clients", "2", "--per-round", "2",
               "--rounds", "2", "--dropout", "0.5", "--out", str(tmp_path / "dep")])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "dep" / "report.json").read_text())
    assert report["rounds_completed"] == 2 and report["complete"]
    assert [(e["reported"], e["failed"]) for e in report["history"]] == [(1, 1), (1, 1)]
    assert all(len(e["clients"]) == 1 and e["clients"][0] in (0, 1) for e in report["history"])
    assert (tmp_path / "dep" / "checkpoint.pt").exists()


def test_superlink_that_cannot_start_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match="SuperLink"):
            deploy_local(SETTINGS, tmp_path, superlink_port=port, timeout=60)


@pytest.mark.parametrize("argv,flag", [
    (["--clients", "3", "--per-round", "5"], "--per-round"),
    (["--bits", "3"], "--bits"),
    (["--algo", "fedprox"], "--algo"),
    (["--dropout", "1.0"], "--dropout"),
    (["--per-round", "1", "--dropout", "0.6"], "--dropout"),
    (["--clients", "2000"], "--clients"),
    (["--rounds", "0"], "--rounds"),
    (["--engine", "grid"], "--engine"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address"),
])
def test_bad_input_is_one_line_exit_2(argv, flag, capsys):
    assert main(["fl", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err
