"""Fixtures several test files share.

* ``tiny_export``: a small VGG-7 trained on scikit-learn's digits with the real pipeline and
  exported to a ``.wkx`` file, once per test session (shared by pytest-xdist workers);
* ``sim``: runs a test once per HDL simulator (Icarus, then Verilator);
* ``cache_dir``: a private ``$WRAPKIT_CACHE_DIR`` for one test.

Test-only generators (random array layers, packed-adder stimulus) are modules beside this
file; ``pyproject.toml`` puts tests/ on the import path.
"""

import fcntl

import pytest

from wrapkit.sim.tools import SIMULATORS

#: The tiny network's settings: quantized-weight pre-training, step selection, cyclic warm-up
#: and quantized fine-tuning with 8-bit accumulators, so its pre-activations do overflow and
#: wrap; about 10 s on one thread.
TINY_TRAINING = dict(method="wrapnet", model="vgg7", widths=(8, 16, 16), dataset="digits",
                     pretrain_epochs=3, warmup_epochs=1, epochs=3, batch_size=64,
                     calib_images=256, acc_bits=8, k=2, p=2.0, lr=3e-3, threads=1)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, worker_id):
    """``(run_dir, export path, ExportFile)`` of the tiny trained digits network.

    One pytest-xdist worker trains and exports it under a file lock in the folder all workers
    share; the others wait for the lock and reuse the files.
    """
    from wrapkit.models import TrainConfig, train
    from wrapkit.models.export import export_run
    from wrapkit.ref.wkx import read_export

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base
    run_dir, wkx = shared / "tiny_vgg7_run", shared / "tiny_vgg7.wkx"
    with open(shared / "tiny_vgg7.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not wkx.is_file():
            train(TrainConfig(**TINY_TRAINING), run_dir, progress=False, log=lambda *a: None)
            export_run(run_dir, wkx)
    return run_dir, wkx, read_export(wkx)


@pytest.fixture(params=SIMULATORS)
def sim(request):
    """The HDL simulator of this run of the test (every test using it runs on each)."""
    return request.param


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty ``$WRAPKIT_CACHE_DIR`` for this test only (build and synthesis caches)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("WRAPKIT_CACHE_DIR", str(path))
    return path
