"""WrapNet training in PyTorch: quantizers, cyclic accumulators, networks, training pipeline.

Pieces, one concept per module:

* :mod:`.qconfig` — quantizer configurations (frozen, validated data): WeightQuant, ActQuant,
  Accumulator.
* :mod:`.fake_quant` — their behaviour as modules, with straight-through gradients.
* :mod:`.accumulate` — wrap-around, the cyclic activation and the overflow penalty in torch,
  equal to ``wrapkit.ref`` on integers.
* :mod:`.layers` — QuantConv2d / QuantLinear computing exact integer pre-activations.
* :mod:`.nets` — VGG-7-style and ResNet-20-style networks; :mod:`.residual` — the quantized
  residual add; :mod:`.qops` — quantized matmul and softmax; :mod:`.graph_nets` — a
  depthwise/pixel-shuffle network and an attention block.
* :mod:`.calibrate` — overflow measurement and step-size selection (§2.3.3).
* :mod:`.regularizers` — R^o and the regularizer interface.
* :mod:`.data` — training tensors, subsets and minibatches on top of :mod:`wrapkit.common.datasets`.
* :mod:`.train` — the pipeline and resumable runs; :mod:`.cli` — ``wrapkit train``.
* :mod:`.export` — the ``.wkx`` writer (VGG-7 layer chains); :mod:`.trace` — any network as
  an integer graph by tracing.

Importing this package imports torch; ``wrapkit.models.cli`` does not.
"""

import importlib
import sys
import types

# Names are imported on first use (PEP 562), so that ``wrapkit.models.cli``, which the
# ``wrapkit`` command imports to build its parser, does not pull in torch.
_EXPORTS = {
    "accumulate": ["accumulate", "cyclic", "overflow_mask", "overflow_penalty", "wrap"],
    "calibrate": ["OverflowMeter", "StepChoice", "range_steps", "select_steps", "tracing"],
    "fake_quant": ["ActFakeQuant", "WeightFakeQuant"],
    "layers": ["LayerTrace", "QuantConv2d", "QuantLinear", "integer_patches", "quant_layers"],
    "nets": ["ResNet20", "ResNet20Config", "VGG7", "VGG7Config", "build_model"],
    "qconfig": ["Accumulator", "ActQuant", "WeightQuant"],
    "qops": ["CodeQuant", "QuantMatmul", "QuantSoftmax"],
    "residual": ["QuantAdd"],
    "regularizers": ["OverflowPenalty", "Regularizer"],
    "train": ["TrainConfig", "evaluate", "layer_report", "load_model", "plan", "train"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


class _Package(types.ModuleType):
    """Keeps ``wrapkit.models.train`` and ``wrapkit.models.accumulate`` the functions of those
    names: importing a submodule makes Python set the package attribute of the same name to
    the submodule, which would otherwise shadow the function once any code had imported
    ``wrapkit.models.train`` as a module. (``sys.modules`` still holds the submodules.)"""

    def __setattr__(self, name, value):
        if (isinstance(value, types.ModuleType) and name in _WHERE
                and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
