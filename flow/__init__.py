"""``wrapkit flow``: the main job end to end, from Fashion-MNIST to a co-design report.

Six stages, in order, each writing into its own folder of the run directory
``<out_root>/<name>/`` (``out/quick`` for the quick preset):

=========  =================================================================================
train      BWN network (binary weights) -> WrapNet (8-bit accumulator, cyclic k) and the
           32-bit-accumulator baseline of the same network (``train/<run>/``)
export     both networks to ``.wkx``; the integer engine on the whole test set: accuracy,
           per-layer overflow, the networks forced to 8-bit wrap-around without cyclic
           layers, accuracy against accumulator width (``export/``)
rtl        the MAC Verilog + manifests of the 8-bit and 32-bit datapaths and of the
           cosimulated layers (``rtl/``)
cosim      real conv layer(s) of the trained networks through those MACs on Icarus and/or
           Verilator (preloaded fast path), every cycle against ``wrapkit.ref`` and every dot
           product against the engine; any mismatch fails the stage (``cosim/``)
synth      Yosys + OpenSTA + gate-level simulation of both datapaths with the layers' real
           operands: area, cycle time, energy per inference (``synth/``)
report     ``report.md``, a self-contained ``report.html`` (embedded plots), ``summary.json``
=========  =================================================================================

The modules, from the bottom up (each imports only those above it):

==================  ===============================================================
``config``          :class:`~.config.FlowConfig`, the presets, config files
``cache``           stage keys: settings, earlier results, data and code digests
``context``         :class:`~.context.StageContext`, what a stage function receives
``training``        the train stage
``evaluation``      the export stage (integer engine on the test set)
``hardware``        the rtl, cosim and synth stages
``summary``         ``summary.json``: every figure and the consistency checks
``report``          plots, ``report.md``, ``report.html``; the report stage
``stages``          :data:`~.stages.STAGES`, the table of stages the runner walks
``runner``          :func:`~.runner.run_flow`, the run folder's ``flow.json``
``cli``             ``wrapkit flow`` and ``wrapkit demo``
==================  ===============================================================

Nothing in ``wrapkit.ref``, ``wrapkit.hw``, ``wrapkit.sim`` or ``wrapkit.models`` imports this
package: the flow is their user, the last step of the data flow. Importing the package loads
nothing heavy. See docs/flow.md.
"""
