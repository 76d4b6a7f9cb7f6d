"""A GEMM tile: ``n_pe`` dot-product PEs, activation / weight buffers, a controller and AXI4-Stream ports.

Computes ``y[t, o] = datapath.scale_accumulate`` of the per-group dot products (FP4 E2M1 codes, one float32
scale per group of ``lanes`` on both operands, a float32 bias per output), bit for bit. Schedule and cycle
count: :mod:`fpqvar.hw.rtl.tile_model` (weights stationary per pass, activations read from the buffer once
per pass; loads and compute do not overlap).

Ports (AXI4-Stream, a beat moves when ``tvalid & tready``; every stream may stall at any cycle):

- ``s_axis_a``: activations, token-major: beat ``(t, g)`` = ``[codes of x[t, g*L:(g+1)*L] | scale]``,
  ``tdata`` = ``4 * lanes`` code bits (lane ``i`` at ``4i``) then the float32 scale (``4 * lanes + 32`` bits);
- ``s_axis_w``: per pass, per PE ``j``: ``groups`` beats of weight codes + scale, then one beat whose scale
  field is the bias of output ``p * n_pe + j``;
- ``m_axis_y``: per pass, one beat per token: ``n_pe`` float32 results (PE ``j`` at ``32j``); ``tlast`` on a
  pass's last token;
- control: ``cfg_tokens`` / ``cfg_groups`` / ``cfg_passes`` are read when ``start`` is high in idle; ``busy``
  until the last result leaves; ``done`` pulses on that cycle.

Back-pressure on the output: a token's last group is issued only while fewer than ``fifo_depth`` results are
reserved (in flight or in the FIFO), so the FIFO never overflows and the PEs / scale units need no stall
logic. The scales and flags travel beside the PE's pipeline in delay registers.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fpqvar.hw.datapath import accumulator_bits
from fpqvar.hw.rtl.pe import DotProductPE
from fpqvar.hw.rtl.scale_acc import ScaleAccumulate
from fpqvar.hw.rtl.tile_model import SCALE_ACC_LATENCY_CYCLES, TileConfig

__all__ = ["GemmTile"]

_UNIT_LOG2 = {"fp4": 2}  # product LSB = 2**-2 (datapath.PRODUCT_UNIT)


def _delay(m: Module, sig, n: int, name: str):
    """``sig`` delayed by ``n`` registers."""
    for k in range(n):
        r = Signal(len(sig), name=f"{name}_d{k + 1}")
        m.d.sync += r.eq(sig)
        sig = r
    return sig


class GemmTile(wiring.Component):
    def __init__(self, cfg: TileConfig = TileConfig()):
        self.cfg = cfg
        self.beat_bits = 4 * cfg.lanes + 32
        super().__init__({
            "s_axis_a_tdata": In(self.beat_bits), "s_axis_a_tvalid": In(1), "s_axis_a_tready": Out(1),
            "s_axis_w_tdata": In(self.beat_bits), "s_axis_w_tvalid": In(1), "s_axis_w_tready": Out(1),
            "m_axis_y_tdata": Out(32 * cfg.n_pe), "m_axis_y_tvalid": Out(1), "m_axis_y_tready": In(1),
            "m_axis_y_tlast": Out(1),
            "cfg_tokens": In(range(cfg.max_tokens + 1)), "cfg_groups": In(range(cfg.max_groups + 1)),
            "cfg_passes": In(range(cfg.max_passes + 1)), "start": In(1), "busy": Out(1), "done": Out(1),
        })

    def elaborate(self, platform):
        cfg, m = self.cfg, Module()
        L, n = cfg.lanes, cfg.n_pe
        code_bits = 4 * L
        # --- configuration, latched on start
        n_tok = Signal.like(self.cfg_tokens, name="n_tok")
        n_grp = Signal.like(self.cfg_groups, name="n_grp")
        n_pass = Signal.like(self.cfg_passes, name="n_pass")
        # --- buffers
        m.submodules.abuf = abuf = Memory(shape=self.beat_bits, depth=cfg.max_tokens * cfg.max_groups, init=[])
        a_wr, a_rd = abuf.write_port(), abuf.read_port()
        w_wr, w_rd, bias = [], [], []
        for j in range(n):
            mem = Memory(shape=self.beat_bits, depth=cfg.max_groups, init=[])
            m.submodules[f"wbuf{j}"] = mem
            w_wr.append(mem.write_port())
            w_rd.append(mem.read_port())
            bias.append(Signal(32, name=f"bias{j}"))
        m.submodules.fifo = fifo = SyncFIFO(width=32 * n + 1, depth=cfg.fifo_depth)
        # --- counters
        t = Signal.like(n_tok, name="t")
        g = Signal(range(cfg.max_groups + 1), name="g")
        j_w = Signal(range(n), name="j_w")
        addr = Signal(range(cfg.max_tokens * cfg.max_groups), name="addr")
        p = Signal.like(n_pass, name="p")
        drain = Signal(range(cfg.drain_cycles + 1), name="drain")
        reserved = Signal(range(cfg.fifo_depth + 1), name="reserved")
        issue = Signal(name="issue")
        last_grp, last_tok = g == n_grp - 1, t == n_tok - 1
        a_hs = self.s_axis_a_tvalid & self.s_axis_a_tready
        w_hs = self.s_axis_w_tvalid & self.s_axis_w_tready
        y_hs = self.m_axis_y_tvalid & self.m_axis_y_tready
        m.d.comb += [a_wr.addr.eq(addr), a_wr.data.eq(self.s_axis_a_tdata), a_wr.en.eq(a_hs),
                     a_rd.addr.eq(addr)]
        for j in range(n):
            m.d.comb += [w_wr[j].addr.eq(g), w_wr[j].data.eq(self.s_axis_w_tdata),
                         w_wr[j].en.eq(w_hs & (j_w == j) & (g != n_grp)), w_rd[j].addr.eq(g)]
            with m.If(w_hs & (j_w == j) & (g == n_grp)):
                m.d.sync += bias[j].eq(self.s_axis_w_tdata[code_bits:])
        m.d.comb += self.done.eq(0)
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n_tok.eq(self.cfg_tokens), n_grp.eq(self.cfg_groups), n_pass.eq(self.cfg_passes),
                                 t.eq(0), g.eq(0), addr.eq(0), p.eq(0), j_w.eq(0)]
                    m.next = "LOAD_A"
            with m.State("LOAD_A"):
                m.d.comb += [self.busy.eq(1), self.s_axis_a_tready.eq(1)]
                with m.If(a_hs):
                    m.d.sync += [addr.eq(addr + 1), g.eq(g + 1)]
                    with m.If(last_grp):
                        m.d.sync += [g.eq(0), t.eq(t + 1)]
                        with m.If(last_tok):
                            m.d.sync += [t.eq(0), addr.eq(0)]
                            m.next = "LOAD_W"
            with m.State("LOAD_W"):
                m.d.comb += [self.busy.eq(1), self.s_axis_w_tready.eq(1)]
                with m.If(w_hs):
                    m.d.sync += g.eq(g + 1)
                    with m.If(g == n_grp):  # the bias beat ends PE j's weights
                        m.d.sync += [g.eq(0), j_w.eq(j_w + 1)]
                        with m.If(j_w == n - 1):
                            m.d.sync += j_w.eq(0)
                            m.next = "COMPUTE"
            with m.State("COMPUTE"):
                m.d.comb += [self.busy.eq(1), issue.eq(~last_grp | (reserved < cfg.fifo_depth))]
                with m.If(issue):
                    m.d.sync += [addr.eq(addr + 1), g.eq(g + 1)]
                    with m.If(last_grp):
                        m.d.sync += [g.eq(0), t.eq(t + 1)]
                        with m.If(last_tok):
                            m.d.sync += [t.eq(0), addr.eq(0), drain.eq(0)]
                            m.next = "DRAIN"
            with m.State("DRAIN"):  # the pass's last results pass the weight / bias registers' readers
                m.d.comb += self.busy.eq(1)
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == cfg.drain_cycles - 1):
                    m.d.sync += p.eq(p + 1)
                    with m.If(p == n_pass - 1):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "LOAD_W"
            with m.State("FINISH"):
                m.d.comb += self.busy.eq(1)
                with m.If(reserved == y_hs):  # the last result is leaving now (or has left)
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        m.d.sync += reserved.eq(reserved + (issue & last_grp) - y_hs)
        # --- datapath: buffer read (1 cycle), PEs, scale-and-accumulate, FIFO
        v1 = Signal(name="v1")
        flags1 = Signal(3, name="flags1")  # first group, last group, last token of the pass
        m.d.sync += [v1.eq(issue), flags1.eq(Cat(g == 0, last_grp, last_grp & last_tok))]
        pe_lat = cfg.pe_latency_cycles
        s_a = _delay(m, a_rd.data[code_bits:], pe_lat, "s_a")
        flags = _delay(m, flags1, pe_lat, "flags")
        ys, sa_valid = [], None
        for j in range(n):
            pe = DotProductPE(cfg.kind, L)
            sa = ScaleAccumulate(accumulator_bits(cfg.kind, L), _UNIT_LOG2[cfg.kind], bias=True)
            m.submodules[f"pe{j}"], m.submodules[f"sa{j}"] = pe, sa
            m.d.comb += [pe.a.eq(a_rd.data[:code_bits]), pe.w.eq(w_rd[j].data[:code_bits]), pe.valid_in.eq(v1),
                         sa.d.eq(pe.dot), sa.s_a.eq(s_a), sa.s_w.eq(_delay(m, w_rd[j].data[code_bits:], pe_lat,
                                                                           f"s_w{j}")),
                         sa.first.eq(flags[0]), sa.last.eq(flags[1]), sa.valid_in.eq(pe.valid_out),
                         sa.bias.eq(bias[j])]
            ys.append(sa.y)
            sa_valid = sa.valid_out
        tlast = _delay(m, flags[2], SCALE_ACC_LATENCY_CYCLES, "tlast")
        m.d.comb += [fifo.w_data.eq(Cat(*ys, tlast)), fifo.w_en.eq(sa_valid),
                     self.m_axis_y_tdata.eq(fifo.r_data[: 32 * n]), self.m_axis_y_tlast.eq(fifo.r_data[32 * n]),
                     self.m_axis_y_tvalid.eq(fifo.r_rdy), fifo.r_en.eq(self.m_axis_y_tready)]
        return m
