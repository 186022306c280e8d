"""cocotb verification of the generated RTL against :mod:`wrapkit.ref` (Icarus, Verilator).

Entry points: :func:`wrapkit.sim.cosim.cosim_mac`, :func:`wrapkit.sim.cosim.cosim_cyclic`
(one call per design and simulator), :func:`wrapkit.sim.runner.run` (any cocotb test module),
and the ``wrapkit cosim`` command. See docs/verification.md. Nothing here
imports cocotb at package import time; the ``tb_*`` modules run inside the simulator.
"""
