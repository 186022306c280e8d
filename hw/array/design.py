"""Verilog + manifest of a :class:`~.top.LayerArray` (``wrapkit rtl array``)."""

import re

from ..manifest import build_manifest
from ..verilog import Design, check_name, component_ports, to_verilog, weight_encoding
from .config import (
    DESCRIPTOR,
    LD_DATA_BITS,
    LOAD_TARGETS,
    MULT_WIDTH,
    ArrayConfig,
    array_hierarchy,
)
from .cycles import pipeline_depths
from .requant import Requantizer
from .top import LayerArray

__all__ = ["array_design", "fold_zero_init"]

# One zero-initialised buffer as Amaranth's backend writes it: a declaration followed by an
# initial block with one assignment per word.
_MEM_INIT = re.compile(
    r"^  reg \[(\d+):0\] (\w+) \[(\d+):0\];\n  initial begin\n((?:    \2\[\d+\] = \d+'h0+;\n)+)"
    r"  end\n", re.M)


def fold_zero_init(text):
    """Fold the per-word zero initialisation of every buffer into one loop.

    Amaranth writes ``mem[i] = 0;`` for every word of a memory (tens of thousands of lines
    for the buffers of a real layer), which makes the file megabytes long and Verilator's
    C++ slow to compile. The loop means the same (every word starts at 0) in Icarus,
    Verilator and Yosys. Only all-zero blocks whose assignments cover ``0 .. depth-1`` in
    order are folded; anything else is left as it is.
    """
    def fold(match):
        msb, name, top, body = match.group(1), match.group(2), int(match.group(3)), match.group(4)
        indices = [int(i) for i in re.findall(rf"{name}\[(\d+)\]", body)]
        if indices != list(range(top + 1)):
            return match.group(0)
        width = int(msb) + 1
        return (f"  reg [{msb}:0] {name} [{top}:0];\n"
                f"  integer {name}__i;\n"
                f"  initial for ({name}__i = 0; {name}__i <= {top}; "
                f"{name}__i = {name}__i + 1) {name}[{name}__i] = {width}'h0;\n")
    return _MEM_INIT.sub(fold, text)


def _interface(cfg):
    layouts = {
        "act": ("act_depth", cfg.mac.act_bits, "address c*H*W + y*W + x: code of input "
                "(c, y, x); a matmul's first operand A (M x K) at k*M + m"),
        "weight": ("weight_depth", cfg.mac.weight_code_bits,
                   "address j*out_channels + o: code of weight (o, j), "
                   "j = (c*k + ky)*k + kx over the group's input channels c; a matmul's "
                   "second operand B (K x N) at k*N + n, as uniform codes"),
        "mult": ("max_channels", MULT_WIDTH, "address o: requant multiplier m_o (signed)"),
        "bias": ("max_channels", 64, "address o: requant bias b_o (signed)"),
        "shift": ("max_channels", 6, "address o: requant shift s_o"),
    }
    return {
        "protocol": [
            "while busy=0: one write per cycle, ld_en=1 with ld_sel, ld_addr, ld_data "
            "(writes while busy are ignored)",
            "start=1 for one cycle; busy=1 from the next cycle",
            "done=1 for one cycle when the last output is written; busy falls with it",
            "cycles = clock edges from the start edge to the edge that raised done",
            "rd_addr=a: rd_data holds output word a one cycle later",
        ],
        "load_targets": {
            target: {"ld_sel": code,
                     **({"depth_param": layouts[target][0],
                         "depth": getattr(cfg, layouts[target][0]),
                         "word_bits": layouts[target][1],
                         "layout": layouts[target][2]} if target in layouts else
                        {"layout": "address = descriptor field index, see descriptor"})}
            for target, code in LOAD_TARGETS.items()
        },
        "ld_data": f"{LD_DATA_BITS}-bit two's complement, cut to the target's word",
        "jobs": ["conv2d (square kernel, stride, padding, dilation, groups: depthwise)",
                 "linear", "matmul of two activation tensors (A in the activation buffer, "
                 "B in the weight buffer; one job per batch/head slice)"],
        "descriptor": [
            {"index": i, "name": name, "width": cfg.field_bits(name)[0],
             "signed": cfg.field_bits(name)[1], "meaning": meaning}
            for i, (name, _, meaning) in enumerate(DESCRIPTOR)
        ],
        "output": {"depth": cfg.out_depth, "word_bits": cfg.out_word_bits,
                   "layout": "address o*OH*OW + y*OW + x: output (o, y, x); a code "
                             "(requant=1) or y as acc_bits two's complement (requant=0)"},
        "driver": "wrapkit.hw.array.jobs.load_program",
    }


def array_design(config, name=None):
    """Elaborate a :class:`~.top.LayerArray` to Verilog and build its manifest.

    Parameters
    ----------
    config : ArrayConfig
    name : str, optional
        Top module name and file stem; defaults to ``config.name``.

    Returns
    -------
    wrapkit.hw.verilog.Design
    """
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {config!r}")
    name = check_name(config.name if name is None else name)
    array = LayerArray(config)
    mac = config.mac
    summary = (f"layer array {config.rows}x{config.cols} of MACs ({mac.act_bits}-bit "
               f"{'signed' if mac.act_signed else 'unsigned'} activations, "
               f"{mac.weight_kind} weights, {mac.acc_bits}-bit wrapping accumulators, "
               f"{'no cyclic activation' if mac.k is None else f'cyclic k={mac.k}'}), "
               f"{config.out_bits}-bit requantized outputs")
    text, yosys = to_verilog(array, name, summary)
    text = fold_zero_init(text)
    instances = array_hierarchy(config, name)
    del instances[name]
    extra = {
        "weight_encoding": weight_encoding(mac),
        "interface": _interface(config),
        "pipeline": {**pipeline_depths(), "requant": Requantizer.LATENCY},
        "cycle_model": "wrapkit.hw.array.cycles.layer_cycles",
    }
    manifest = build_manifest(
        name=name, design="array", config=config.to_dict(), latency=LayerArray.READ_LATENCY,
        clocked=True, ports=component_ports(array, True), hierarchy=instances,
        verilog_text=text, yosys=yosys, extra=extra)
    return Design(name, text, manifest)
