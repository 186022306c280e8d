"""Formal proofs that generated RTL computes the reference semantics (``wrapkit prove``).

Simulation checks the inputs it is given; these proofs cover every input. A cyclic
activation unit is proved equal to the formula of docs/datapath.md by SAT over all inputs;
a MAC is proved equal to a behavioural model of its cycle semantics by bounded model
checking plus k-induction (every input sequence, every cycle). The behavioural models are
Verilog written from the formulas (:mod:`.models`) and are themselves checked against
``wrapkit.ref`` by simulation (:mod:`.model_check`).

=====================  =====================================================================
module                 role
=====================  =====================================================================
``prove``              :func:`prove_manifest`: read a manifest, pick the proof, scratch folder
``cyclic_proof``       SAT miter of a cyclic unit against the formula (Yosys ``sat``)
``mac_proof``          BMC + k-induction of a MAC against its model (yosys-smtbmc, z3)
``models``             behavioural Verilog models written from the formulas
``model_check``        the models simulated against ``wrapkit.ref`` (Icarus)
``mutants``            deliberately broken designs that a proof must reject
``results``            :class:`ProofResult`, counterexample traces and their printing
``vcd``                reading yosys-smtbmc's counterexample traces
``signals``            two's-complement reading of bit patterns
``tools``              finding and running the external tools
``cli``                ``wrapkit prove``
=====================  =====================================================================
"""

from .prove import PROVABLE_DESIGNS, prove_manifest
from .results import Counterexample, ProofResult

__all__ = ["PROVABLE_DESIGNS", "Counterexample", "ProofResult", "prove_manifest"]
