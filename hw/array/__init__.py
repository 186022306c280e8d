"""The layer datapath: an output-stationary array of WrapNet MACs that runs a whole conv2d
(grouped, depthwise, dilated), linear or activation x activation matmul job, with its host
driver and exact cycle model.

Amaranth-free: :mod:`.config`, :mod:`.jobs`, :mod:`.nodes` (graph nodes as jobs; import
them directly). Hardware, one
component per module: :mod:`.top` (``LayerArray``) composed of :mod:`.controller`,
:mod:`.fetch`, :mod:`.grid` (of :mod:`.pe`) and :mod:`.drain` (with :mod:`.requant`), joined
by :mod:`.delay` lines and described by the :mod:`.descriptor` layout; :mod:`.cycles` is the
cycle model built from their ``LATENCY`` constants; :mod:`.design` writes Verilog + manifest.
See docs/array.md.
"""
