"""The layer datapath (issue 5): an output-stationary array of WrapNet MACs that runs a whole
conv2d or linear layer, with its host driver and exact cycle model.

Amaranth-free: :mod:`.config`, :mod:`.layer`, :mod:`.cycles` (import them directly).
Hardware: :mod:`.pe`, :mod:`.requant`, :mod:`.top` (``LayerArray``), :mod:`.design`
(Verilog + manifest). See docs/array.md.
"""
