"""Energy from transition counts, the liberty's power tables and OpenSTA's operating point.

For every leaf cell, with ``r``/``f`` the rising/falling transitions counted on a pin in the
gate-level simulation and the liberty tables read at the pin's operating point (the load
capacitance and input slews OpenSTA computed):

* **switching** (per output pin): ``(r * C_rise + f * C_fall) * V^2 / 2`` -- charging the net
  and the pins it drives;
* **internal, output pins**: ``r * E_rise + f * E_fall`` with ``E`` from the pin's
  ``internal_power`` tables at (load, input slew). A multi-input cell has one table per input
  (``related_pin``); they are weighted by how often each input toggled, the input most likely
  to have caused the output transition;
* **internal, input pins** (the flip-flops' clock and data pins): ``r * E_rise + f * E_fall``
  at the pin's own slew;
* **leakage**: ``cell_leakage_power`` for the whole window.

Group attribution follows the driver: a net's switching energy belongs to the group of the
cell that drives it. Primary-input nets are split over the groups of the pins they load (by
capacitance), and the clock net -- ideal here, with no clock tree -- is auxiliary, as the paper
counts clock distribution.

Why not OpenSTA's ``report_power`` with annotated activities: the installed OpenSTA 2.0.17
(Debian) ignores user activities on combinational output pins (it re-propagates them
probabilistically from the inputs), and charges each transition the *sum* of the rise and fall
table energies rather than the one that happened. Both are measured by
``tests/test_synth_energy.py``; its switching term agrees with this model exactly, which the
tests check too.
"""

from dataclasses import dataclass

import numpy as np

from .liberty import Library
from .netlist import FlatNetlist

__all__ = ["GroupEnergy", "cell_energies", "energy_per_cycle", "uniform_activity"]

# Liberty table variables that take the output load / the input transition.
_LOAD_VARS = {"total_output_net_capacitance", "output_net_capacitance"}
_SLEW_VARS = {"input_transition_time", "input_net_transition", "related_pin_transition"}


@dataclass(frozen=True)
class GroupEnergy:
    """Energy per clock cycle of one group, in joules, split by mechanism."""

    internal: float
    switching: float
    leakage: float

    @property
    def total(self):
        return self.internal + self.switching + self.leakage

    def to_dict(self):
        return {"internal_j": self.internal, "switching_j": self.switching,
                "leakage_j": self.leakage, "total_j": self.total}


def _table_energy(table, load_units, slew_units):
    if table is None:
        return 0.0
    point = {}
    for var in table.variables:
        if var in _LOAD_VARS:
            point[var] = load_units
        elif var in _SLEW_VARS:
            point[var] = slew_units
        else:
            raise ValueError(f"internal-power table variable {var!r} is not supported")
    return table.at(**point)


def _pin_slew(timing_slews, path):
    s = timing_slews.get(path)
    return (0.5 * (s[0] + s[1])) if s else 0.0


def cell_energies(flat: FlatNetlist, lib: Library, slews, loads, rise, fall):
    """Energy of each leaf cell (and the undriven nets) for the given transition counts.

    Parameters
    ----------
    flat : FlatNetlist
    lib : Library
    slews : dict
        Pin path -> (rise, fall) transition time in seconds (OpenSTA).
    loads : dict
        Driver pin path -> (rise, fall) load capacitance in farads (OpenSTA).
    rise, fall : ndarray
        Transitions per net (indexed like ``flat.nets``).

    Returns
    -------
    (internal, switching, per_group_extra)
        ``internal[i]`` and ``switching[i]`` in joules for cell ``i`` (switching of the net its
        outputs drive); ``per_group_extra`` maps group -> joules of switching on nets without
        a driver cell (primary inputs, the clock).
    """
    v2 = (lib.nom_voltage * lib.voltage_unit) ** 2
    escale = lib.energy_scale()
    internal = np.zeros(len(flat.cells))
    switching = np.zeros(len(flat.cells))
    rise = np.asarray(rise, dtype=float)
    fall = np.asarray(fall, dtype=float)
    for ci, cell in enumerate(flat.cells):
        lc = lib.cells[cell.type]
        for pname, net in cell.pins.items():
            if isinstance(net, str):
                continue
            pin = lc.pins.get(pname)
            if pin is None:
                continue
            path = f"{cell.name}/{pname}"
            r, f = rise[net], fall[net]
            if pin.direction == "output":
                c_r, c_f = loads.get(path, (0.0, 0.0))
                switching[ci] += 0.5 * v2 * (r * c_r + f * c_f)
                if not pin.internal_power or (r == 0 and f == 0):
                    continue
                load_units = 0.5 * (c_r + c_f) / lib.cap_unit
                # Weight each related input's tables by how often that input toggled.
                by_input = {}
                for ip in pin.internal_power:
                    by_input.setdefault(ip.related_pin, []).append(ip)
                weights = {}
                for q in by_input:
                    qn = cell.pins.get(q)
                    weights[q] = (rise[qn] + fall[qn]) if isinstance(qn, (int, np.integer)) \
                        else 0.0
                wsum = sum(weights.values())
                if wsum == 0:
                    weights = {q: 1.0 for q in by_input}
                    wsum = float(len(by_input))
                e_r = e_f = 0.0
                for q, groups in by_input.items():
                    slew_units = _pin_slew(slews, f"{cell.name}/{q}") / lib.time_unit
                    gr = np.mean([_table_energy(ip.rise, load_units, slew_units)
                                  for ip in groups])
                    gf = np.mean([_table_energy(ip.fall, load_units, slew_units)
                                  for ip in groups])
                    e_r += weights[q] / wsum * gr
                    e_f += weights[q] / wsum * gf
                internal[ci] += (r * e_r + f * e_f) * escale
            elif pin.direction == "input" and pin.internal_power:
                if r == 0 and f == 0:
                    continue
                slew_units = _pin_slew(slews, path) / lib.time_unit
                e_r = np.mean([_table_energy(ip.rise, 0.0, slew_units)
                               for ip in pin.internal_power])
                e_f = np.mean([_table_energy(ip.fall, 0.0, slew_units)
                               for ip in pin.internal_power])
                internal[ci] += (r * e_r + f * e_f) * escale
    extra = {}
    for ni, net in enumerate(flat.nets):
        if net.driver is not None or (rise[ni] == 0 and fall[ni] == 0):
            continue
        caps = []
        for ci, pname in net.loads:
            lc = lib.cells[flat.cells[ci].type]
            caps.append((flat.cells[ci].group, lc.pins[pname].capacitance * lib.cap_unit))
        total_cap = sum(c for _, c in caps)
        if net.port_direction == "output" or total_cap == 0:
            continue
        energy = 0.5 * v2 * (rise[ni] + fall[ni]) * total_cap
        if ni == flat.clock_net:
            extra["auxiliary"] = extra.get("auxiliary", 0.0) + energy
            continue
        for group, c in caps:
            extra[group] = extra.get(group, 0.0) + energy * c / total_cap
    return internal, switching, extra


def energy_per_cycle(flat: FlatNetlist, lib: Library, slews, loads, rise, fall, cycles,
                     period):
    """Energy per clock cycle per group (:class:`GroupEnergy`), leakage at ``period`` seconds.

    ``rise``/``fall`` are transition counts over ``cycles`` cycles.
    """
    internal, switching, extra = cell_energies(flat, lib, slews, loads, rise, fall)
    groups = {}
    for ci, cell in enumerate(flat.cells):
        g = groups.setdefault(cell.group, [0.0, 0.0, 0.0])
        g[0] += internal[ci] / cycles
        g[1] += switching[ci] / cycles
        g[2] += lib.cells[cell.type].leakage * lib.leakage_unit * period
    for group, e in extra.items():
        groups.setdefault(group, [0.0, 0.0, 0.0])[1] += e / cycles
    return {g: GroupEnergy(*v) for g, v in groups.items()}


def uniform_activity(flat: FlatNetlist, activity=0.1, cycles=1000):
    """Transition counts with every net at ``activity`` transitions per cycle (half rising)
    and the clock at 2 -- the vectorless default the flow reports for comparison."""
    n = len(flat.nets)
    rise = np.full(n, activity * cycles / 2)
    fall = np.full(n, activity * cycles / 2)
    if flat.clock_net is not None:
        rise[flat.clock_net] = fall[flat.clock_net] = cycles
    return rise, fall, cycles
