"""cocotb testbench: a trained layer's real operand stream driven into the MAC cycle by cycle.

The driven path of ``wrapkit cosim layer`` on a MAC (the preloaded path is
:mod:`wrapkit.sim.stream_cosim`).
It reuses the MAC testbench's driver, monitor, streamed reference model and in-order
scoreboard (:mod:`wrapkit.sim.tb_mac`); only the stimulus differs: instead of random
operations it plays the :class:`~wrapkit.ref.opstream.MacOpStream` file named by
``WRAPKIT_TB_STREAM`` (written by :func:`wrapkit.sim.layer_mac.cosim_layer` from the integer
engine), and every cycle's ``acc`` (and ``y``) is compared with ``wrapkit.ref``.

Parameters (environment): ``WRAPKIT_TB_MANIFEST``, ``WRAPKIT_TB_STREAM``.
"""

import time

import cocotb

from wrapkit.ref.opstream import MacOpStream

from .tb_mac import MacBench
from .testbench import tb_param, write_report


@cocotb.test()
async def test_layer_stream(dut):
    """Every operation of the stream checked against the reference, in order."""
    bench = MacBench(dut, "layer_stream")
    stream = MacOpStream.load(tb_param("STREAM"))
    await bench.driver.reset()
    monitor = cocotb.start_soon(bench.monitor.run())
    t0 = time.perf_counter()
    await bench.driver.drive_stream(stream)
    await bench.finish()
    wall = time.perf_counter() - t0
    monitor.cancel()
    sb = bench.scoreboard
    report = bench.summary({"wall_s": wall, "ops_per_s": sb.checked / wall if wall > 0 else 0.0})
    write_report("test_layer_stream", report)
    bench.log.info("%d ops checked, %d mismatches, %.0f ops/s", sb.checked, sb.mismatches,
                   report["ops_per_s"])
    assert sb.mismatches == 0, (f"{sb.mismatches} mismatches in {sb.checked} ops; first: "
                                f"{sb.examples[0] if sb.examples else '?'}")
    assert sb.checked == len(stream) and sb.unobserved == 0, \
        f"checked {sb.checked} of {len(stream)} ops ({sb.unobserved} never sampled)"
