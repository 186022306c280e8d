"""Interchange with the field's tools: integer graphs to and from ONNX / QONNX.

* :mod:`.onnx_export` — an integer graph as standard ONNX operators (``wrapkit export
  --format qonnx``), QONNX datatype annotations on every integer tensor;
* :mod:`.onnx_check` — the exported model run by onnxruntime or QONNX's executor, compared
  node by node with :class:`wrapkit.ref.graph.GraphEngine`;
* :mod:`.qonnx_import` — a QONNX model exported by Brevitas read into an integer graph
  (``wrapkit import``).

Imports ``common`` and ``ref`` (and onnx / onnxruntime / qonnx), never torch.
"""
