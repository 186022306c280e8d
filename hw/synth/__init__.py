"""Area, timing and stimulus-based energy of generated MAC designs with open tools.

Yosys maps a design onto a standard-cell liberty keeping the paper's area groups
(``yosys``), OpenSTA finds the minimum cycle time and the electrical operating point
(``sta``), Icarus simulates the mapped netlist with real or random operands and checks it
against ``wrapkit.ref`` (``activity``), and the liberty's power tables turn the counted
transitions into energy per group (``energy``). ``evaluate`` runs the stages for one design
with a cache (``cache``), ``report`` formats the paper's tables, ``estimate`` scales to whole networks and
``cli`` is ``wrapkit synth``. Method and results: docs/estimation.md.

Submodules are imported on demand; importing this package loads nothing heavy.
"""
