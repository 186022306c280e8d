"""Amaranth generators (MAC unit, cyclic activation) and their Verilog export.

``wrapkit.hw.mac.MAC``, ``wrapkit.hw.cyclic.CyclicActivation``, ``wrapkit.hw.verilog``
(Verilog + manifest), ``wrapkit.hw.manifest`` (reading manifests; no Amaranth import). This
package imports nothing itself, so ``wrapkit.hw.cli`` and readers of manifests stay light;
see docs/hardware.md.
"""
