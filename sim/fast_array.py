"""The layer array on Verilator without cocotb: a C++ harness runs whole job lists free and
the host checks every output in bulk.

cocotb pays a Python round trip for every load-port write and every read-back word; here a
generated C++ ``main`` does both at C++ speed: it reads a job file (per job the load-port
writes of :func:`wrapkit.hw.array.jobs.load_program` that change what the array holds, and
the number of output words),
resets the array, writes each job through the load port, pulses ``start``, clocks the
controller until ``done`` (timing only this part as "compute"), reads the output buffer
back through ``rd_addr``/``rd_data`` and writes ``cycles`` and the words to a file. Python
compares every job's words with :func:`wrapkit.hw.array.jobs.reference_outputs` (and callers
with the integer engine) in numpy.

The build is cached per design (:func:`wrapkit.common.buildcache.build_once`).
"""

import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wrapkit.common import processes
from wrapkit.common.buildcache import build_once, hash_parts

from .runner import SimulationError, build_root
from .tools import prepare_simulator, simulator_version

__all__ = ["FastArrayRun", "build_fast_array", "run_fast_array"]

_BUILT = ".wrapkit-built"

_MAIN = r"""
#include "Varr.h"
#include "verilated.h"
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

static Varr* top;
static inline void tick() { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    if (argc < 3) { std::fprintf(stderr, "usage: jobs.bin out.bin\n"); return 2; }
    FILE* in = std::fopen(argv[1], "rb");
    FILE* out = std::fopen(argv[2], "wb");
    if (!in || !out) { std::fprintf(stderr, "cannot open files\n"); return 2; }
    int64_t n_jobs = 0;
    if (std::fread(&n_jobs, 8, 1, in) != 1) return 2;
    top = new Varr;
    top->rst = 1; top->ld_en = 0; top->start = 0;
    for (int i = 0; i < 3; i++) tick();
    top->rst = 0;
    double compute = 0.0;
    int64_t total_cycles = 0;
    std::vector<int64_t> w;
    for (int64_t j = 0; j < n_jobs; j++) {
        int64_t hdr[3];   // writes, output words, cycle limit
        if (std::fread(hdr, 8, 3, in) != 3) return 3;
        w.resize(3 * hdr[0]);
        if (hdr[0] && std::fread(w.data(), 8, 3 * hdr[0], in) != (size_t)(3 * hdr[0])) return 3;
        for (int64_t i = 0; i < hdr[0]; i++) {
            top->ld_en = 1; top->ld_sel = w[3 * i]; top->ld_addr = w[3 * i + 1];
            top->ld_data = (uint64_t)w[3 * i + 2];
            tick();
        }
        top->ld_en = 0;
        auto t0 = std::chrono::steady_clock::now();
        top->start = 1; tick(); top->start = 0;
        int64_t n = 1;
        while (!top->done && n <= hdr[2]) { tick(); n++; }
        auto t1 = std::chrono::steady_clock::now();
        compute += std::chrono::duration<double>(t1 - t0).count();
        int64_t cyc = top->done ? (int64_t)top->cycles : -1;
        total_cycles += n;
        std::fwrite(&cyc, 8, 1, out);
        for (int64_t a = 0; a < hdr[1]; a++) {
            top->rd_addr = a; tick();
            int64_t word = (int64_t)top->rd_data;
            std::fwrite(&word, 8, 1, out);
        }
    }
    std::fclose(out);
    std::printf("compute_s %.9f cycles %lld\n", compute, (long long)total_cycles);
    top->final();
    delete top;
    return 0;
}
"""


@dataclass
class FastArrayRun:
    """Outcome of :func:`run_fast_array`.

    Attributes
    ----------
    cycles : list of int
        Per job, the ``cycles`` port when ``done`` rose (-1: no ``done``).
    words : list of ndarray
        Per job, the output-buffer words ``0 .. out_channels*positions - 1``.
    compute_s : float
        Wall time of the simulated computations only (``start`` to ``done``).
    run_s : float
        Wall time of the whole simulator process (loads, computations, read-back, file I/O).
    """

    cycles: list = field(default_factory=list)
    words: list = field(default_factory=list)
    compute_s: float = 0.0
    run_s: float = 0.0


def build_fast_array(manifest, verilog, *, root=None):
    """Build (or reuse) the Verilator harness of an array design; returns the executable."""
    prepare_simulator("verilator")
    verilog = Path(verilog).resolve()
    key = hash_parts("fast-array", simulator_version("verilator"), _MAIN, verilog, length=16)
    base = Path(root).resolve() if root is not None else build_root()
    folder = base / "fast_array" / f"{manifest['top']}-{key}"
    exe = folder / "wk_array_sim"

    def compile_harness(folder):
        (folder / "main.cpp").write_text(_MAIN)
        log = folder / "build.log"
        cmd = ["verilator", "--cc", "--exe", "--build", "-O3", "--no-timing", "-Wno-fatal",
               "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast",
               "-j", "2", "--top-module", manifest["top"], "--prefix", "Varr",
               "-Mdir", str(folder / "obj"), "-o", str(exe), str(folder / "main.cpp"),
               str(verilog)]
        with open(log, "w") as f:
            proc = processes.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=folder)
        if proc.returncode != 0 or not exe.is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise SimulationError(f"verilator failed to build the array harness for "
                                  f"{manifest['top']}; log {log}:\n{tail}")
        (folder / _BUILT).write_text(" ".join(cmd) + "\n")

    build_once(folder, _BUILT, compile_harness)
    return exe


def run_fast_array(exe, cfg, jobs, *, timeout=3600):
    """Run ``jobs`` (checked :class:`~wrapkit.hw.array.jobs.LayerJob` list) back to back."""
    from wrapkit.hw.array.cycles import layer_cycles
    from wrapkit.hw.array.jobs import load_program

    parts = [np.array([len(jobs)], dtype=np.int64)]
    n_out = []
    # The buffers and the descriptor keep their contents from one job to the next (start
    # clears only the drain lane's counters), so only words that differ from what the array
    # already holds are written: a layer run for many images, one after the other, loads
    # its weights once.
    held = {}
    for job in jobs:
        sel, addr, data = load_program(cfg, job)
        keep = np.ones(len(sel), dtype=bool)
        for target in np.unique(sel):
            idx = np.nonzero(sel == target)[0]
            a = addr[idx]
            mem = held.get(int(target))
            if mem is None or len(mem) <= a.max():
                grown = np.full(int(a.max()) + 1, np.iinfo(np.int64).min, dtype=np.int64)
                if mem is not None:
                    grown[:len(mem)] = mem
                mem = held[int(target)] = grown
            keep[idx] = mem[a] != data[idx]
            mem[a] = data[idx]
        sel, addr, data = sel[keep], addr[keep], data[keep]
        n = job.shape.out_channels * job.shape.positions
        n_out.append(n)
        limit = layer_cycles(cfg, job.shape).total + 64
        parts.append(np.array([len(sel), n, limit], dtype=np.int64))
        parts.append(np.stack([sel, addr, data], axis=1).astype(np.int64).reshape(-1))
    with tempfile.TemporaryDirectory(prefix="wrapkit-fast-array-") as tmp:
        jobs_file, out_file = Path(tmp) / "jobs.bin", Path(tmp) / "out.bin"
        np.concatenate(parts).tofile(jobs_file)
        t0 = time.perf_counter()
        proc = processes.run([str(exe), str(jobs_file), str(out_file)], capture_output=True,
                             text=True, timeout=timeout)
        run_s = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SimulationError(f"the array harness exited with status {proc.returncode}: "
                                  f"{(proc.stderr or proc.stdout).strip()[-400:]}")
        raw = np.fromfile(out_file, dtype=np.int64)
    res = FastArrayRun(run_s=run_s)
    res.compute_s = float(proc.stdout.split()[1])
    pos = 0
    for n in n_out:
        res.cycles.append(int(raw[pos]))
        res.words.append(raw[pos + 1:pos + 1 + n].copy())
        pos += 1 + n
    return res
