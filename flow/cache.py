"""Stage keys: when a finished stage of a run folder may be reused.

A stage's key is the SHA-256 of its settings, the results of the stages it reads (without
times), its input data (the train stage) and the Python sources of the wrapkit packages its
code lives in (:func:`wrapkit.common.buildcache.source_fingerprint`). Later stages depend on
earlier stages' *results*, not their keys: a stage that reran and computed the same thing
(e.g. training runs reused after an unrelated code change) does not invalidate the stages
after it.
"""

import hashlib
import json
from pathlib import Path

from wrapkit import __version__
from wrapkit.common.buildcache import hash_parts, source_fingerprint

__all__ = ["FLOW_SCHEMA", "TRAINING_PACKAGES", "code_digest", "data_digest", "result_digest",
           "stage_key", "training_code_digest"]

#: Schema of the run folder's ``flow.json``; part of every key, so a new schema reruns all.
FLOW_SCHEMA = "wrapkit.flow/1"

#: The packages whose code a training run executes: a finished run is reused only when their
#: sources are unchanged.
TRAINING_PACKAGES = ("models", "ref")

# Result fields that vary from run to run without changing what a stage computed (times,
# whether something was reused); left out of the digests that later stages' keys use.
_VOLATILE = frozenset({"seconds", "reused", "images_per_s", "wall_s", "build_s", "ops_per_s"})


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def result_digest(result):
    """SHA-256 of a stage result without its volatile fields (what later stages depend on)."""
    return hashlib.sha256(json.dumps(_stable(result), sort_keys=True).encode()).hexdigest()


def code_digest(packages):
    """Fingerprint of the Python sources of the wrapkit ``packages`` (e.g. ``("flow", "hw")``)."""
    return source_fingerprint(*packages, length=None)


def training_code_digest():
    """Fingerprint of the code a training run executes (:data:`TRAINING_PACKAGES`)."""
    return code_digest(TRAINING_PACKAGES)


def data_digest(cfg):
    """The training/test data's identity: the Fashion-MNIST files' bytes, or sklearn's
    version for its bundled digits."""
    if cfg.dataset == "fashion-mnist":
        from wrapkit.common.datasets import DEFAULT_DATA_DIR

        folder = Path(cfg.data_dir or DEFAULT_DATA_DIR)
        files = sorted(folder.glob("*-ubyte.gz"))
        return hash_parts(cfg.dataset, *(part for f in files for part in (f.name, f)))
    import sklearn

    return hash_parts(cfg.dataset, sklearn.__version__)


def stage_key(stage, cfg, results, extra=""):
    """SHA-256 of a stage's settings, the results it reads, its code and ``extra`` (the
    train stage's data digest).

    Parameters
    ----------
    stage : wrapkit.flow.stages.FlowStage
        Its ``settings``, ``reads`` and ``packages`` enter the key.
    cfg : wrapkit.flow.config.FlowConfig
    results : dict
        The results of the stages before it, by stage name.
    extra : str
        Anything else the stage's outcome depends on.
    """
    settings = cfg.to_dict()
    return hash_parts(
        f"{FLOW_SCHEMA} {stage.name} {__version__}",
        json.dumps({k: settings[k] for k in stage.settings}, sort_keys=True),
        json.dumps([result_digest(results[s]) for s in stage.reads]),
        code_digest(stage.packages),
        extra)
