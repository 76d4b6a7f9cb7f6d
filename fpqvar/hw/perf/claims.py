"""The paper's hardware claims (fpqvar-method.md "Additional figures"; hardware.md section 1) beside the model.

No constant is tuned to hit a claim. Where a claim is not met, ``implied`` says which single named field
would have to change, and to what, for the model to meet it (found by bisection on a monotone quantity).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fpqvar.hw.perf.accelerator import GPU, Accelerator
from fpqvar.hw.perf.cost import gemm_cost, ght_cost
from fpqvar.hw.perf.estimate import EstimateOptions, PerfResult, estimate
from fpqvar.hw.perf.gpu import estimate_gpu, gpu_hadamard_seconds
from fpqvar.hw.perf.recipes import get_hw_recipe
from fpqvar.model.workload import Op, gemm, hadamard_flops
from fpqvar.model.zoo import get_model_spec

CLAIM_MODEL = "var-d30"
TOLERANCE = 0.15  # a model value within 15 % of the paper's counts as reproduced (the model's inputs are guesses)


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    paper: float
    model: float
    status: str  # "reproduced" | "not reproduced" | "exact (formula)"
    assumptions: str
    implied: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _status(model: float, paper: float) -> str:
    return "reproduced" if abs(model / paper - 1) <= TOLERANCE else "not reproduced"


def ght_flop_ratio(dim: int = 1920, block: int = 128) -> dict[str, float]:
    """Full Hadamard of size ``dim`` vs blockdiag(H_block): dense count dim / block; FWHT count
    log2(dim) / log2(block)."""
    return {m: hadamard_flops(dim, dim, m) / hadamard_flops(dim, block, m) for m in ("dense", "fwht")}


def _boundary(pred, lo: float, hi: float, iters: int = 10) -> tuple[float, float] | None:
    """Geometric bisection of a monotone predicate with pred(lo) != pred(hi): returns (lo, hi) bracketing the
    switch, each end keeping its side's value; None when pred does not switch on [lo, hi]."""
    p_lo = pred(lo)
    if p_lo == pred(hi):
        return None
    for _ in range(iters):
        mid = (lo * hi) ** 0.5
        if pred(mid) == p_lo:
            lo = mid
        else:
            hi = mid
    return lo, hi


def evaluate_claims(acc: Accelerator, int_acc: Accelerator, gpu: GPU, int_recipe: str = "int4",
                    opts: EstimateOptions = EstimateOptions()) -> tuple[list[Claim], dict[str, PerfResult]]:
    spec = get_model_spec(CLAIM_MODEL)
    var, vae = spec.var, spec.vae

    def run(a, recipe, **kw) -> PerfResult:
        return estimate(CLAIM_MODEL, var, vae, a, get_hw_recipe(recipe), _replace(opts, **kw))

    fp = run(acc, "fpqvar-w4a4")
    seq = run(acc, "fpqvar-w4a4", schedule="sequential")
    ints = {r: run(int_acc, r) for r in ("int4", "int8", "int4-fc2", "int8-fc2")}
    it = ints[int_recipe]
    g = estimate_gpu(var, vae, gpu, opts.batch_images, opts.cfg, opts.vae_on_host)
    results = {"fpqvar": fp, "sequential": seq, **{f"integer:{k}": v for k, v in ints.items()}}
    base = (f"{opts.schedule} schedule, batch {opts.batch_images}, clock {acc.clock_hz / 1e6:.0f} MHz, DDR "
            f"{acc.memory.effective_bandwidth_bytes_per_s / 1e9:.1f} GB/s, {acc.e2m1_pes}+{acc.dfq_pes} PEs, "
            f"ada_lin {'per scale' if opts.ada_lin_per_scale else 'once'}")
    claims = []

    bw = _boundary(lambda b: run(acc.with_overrides({"memory": {"offchip_bandwidth_bytes_per_s": b}}),
                                 "fpqvar-w4a4").images_per_s >= 1.1, 1e9, 1e12)
    once = run(acc, "fpqvar-w4a4", ada_lin_per_scale=False).images_per_s
    claims.append(Claim("throughput", "VAR-d30 W4A4 on VCK190: 1.1 image/s", 1.1, fp.images_per_s,
                        _status(fp.images_per_s, 1.1), base,
                        (f"1.1 image/s from offchip_bandwidth_bytes_per_s >= {bw[1] / 1e9:.1f} GB/s" if bw else
                         "not reachable by DDR bandwidth alone") + f"; ada_lin once per sample: {once:.2f} image/s"))

    r_tp = fp.images_per_s / it.images_per_s
    others = ", ".join(f"{k} {fp.images_per_s / v.images_per_s:.2f}x" for k, v in ints.items())
    dsps = _boundary(lambda d: run(int_acc.with_overrides({"dsp": {"gemm_dsps": int(d)}}), int_recipe).images_per_s
                     <= fp.images_per_s / 3.1, 8, int_acc.dsp_gemm_dsps, iters=8)
    claims.append(Claim("int_throughput", "3.1x the throughput of an integer accelerator", 3.1, r_tp,
                        _status(r_tp, 3.1), f"integer = {int_recipe} on {int_acc.dsp_gemm_dsps} DSP58 at the same "
                        f"clock, DDR and schedule; {others}",
                        f"3.1x if the integer design had <= {int(dsps[0])} DSPs for its GEMMs" if dsps else ""))

    r_ee = it.energy_per_image_j / fp.energy_per_image_j
    top = max((k for k in fp.energy_breakdown_j), key=fp.energy_breakdown_j.get)
    claims.append(Claim("int_energy", "3.6x the energy efficiency of the integer accelerator", 3.6, r_ee,
                        _status(r_ee, 3.6), f"power model defaults (assumed per-event energies); largest FPQVAR "
                        f"term: {top} {fp.energy_breakdown_j[top]:.2f} J of {fp.energy_per_image_j:.2f} J/image",
                        "energy per op is unknown (hardware.md section 2); the ratio follows latency and DDR bytes"))

    r_gpu = g.energy_per_image_j / fp.energy_per_image_j
    watts = 2.8 * fp.energy_per_image_j * opts.batch_images / g.latency_s
    claims.append(Claim("gpu_energy", "2.8x the energy efficiency of the GPU", 2.8, r_gpu, _status(r_gpu, 2.8),
                        f"{gpu.name}: FP16 roofline {g.latency_s * 1e3:.0f} ms/image at {gpu.board_watts:.0f} W "
                        "board power; the FPGA side is device power only (static + per-event energies)",
                        f"2.8x exactly if the GPU draws {watts:.0f} W"))

    r_pipe = seq.latency_s / fp.latency_s
    nodb = acc.with_overrides({"memory": {"double_buffered": False}})
    r_nodb = run(nodb, "fpqvar-w4a4", schedule="sequential").latency_s / fp.latency_s
    claims.append(Claim("pipeline", "two-level pipeline: 2.3x lower latency", 2.3, r_pipe, _status(r_pipe, 2.3),
                        "sequential vs level-2 schedule (GHT and quantizers run at 128 elements/cycle, so level 1 "
                        "hides little; level 2 hides ada_lin behind fc2)",
                        f"{r_nodb:.2f}x if the sequential baseline also loses tile double buffering; the paper's "
                        "baseline is unknown"))

    ratio = ght_flop_ratio(var.C, 128)
    claims.append(Claim("ght_flops", "GHT: ~15x fewer FLOPs than a full Hadamard at C = 1920", 15.0, ratio["dense"],
                        "exact (formula)", "dense count: 2*C*C vs 2*C*128 per token, ratio C/128",
                        f"a FWHT-like count (C log2 C vs C log2 128) gives only {ratio['fwht']:.2f}x"))

    gpu_ratio, fpga_ratio = _ght_speed(acc, gpu, var, opts)
    claims.append(Claim("ght_speed", "GHT measured 3.9x faster than the full Hadamard", 3.9, gpu_ratio,
                        _status(gpu_ratio, 3.9), f"GPU roofline, both as dense FP16 matmuls at every GHT site of a "
                        f"generation, {gpu.kernel_overhead_s * 1e6:.0f} us per kernel",
                        f"on the accelerator (GHTU vs a dense FP16 full HT on the DSP array) the model gives "
                        f"{fpga_ratio:.0f}x; where the paper measured 3.9x is unknown"))
    return claims, results


def _ght_speed(acc: Accelerator, gpu: GPU, var, opts: EstimateOptions) -> tuple[float, float]:
    """Time of all GHT sites of one generation (qkv and fc1 inputs, every block and scale): full HT / GHT."""
    rows = opts.batch_images * (2 if opts.cfg else 1)
    C, w4a4 = var.C, get_hw_recipe("fpqvar-w4a4")
    g_full = g_blk = a_full = a_blk = 0.0
    for pn in var.patch_nums:
        t = rows * pn * pn
        sites = 2 * var.depth
        g_full += sites * gpu_hadamard_seconds(t, C, C, gpu)
        g_blk += sites * gpu_hadamard_seconds(t, C, 128, gpu)
        full = gemm("ada_lin", "linear", 0, 0, t, C, C)  # a C x C FP16 matmul placed like an FP16 GEMM
        a_full += sites * gemm_cost(full, acc, w4a4).cycles
        a_blk += sites * ght_cost(Op("ght_qkv", "ght", "ght", 0, 0, elems=t * C), acc).cycles
    return g_full / g_blk, a_full / a_blk


def _replace(opts: EstimateOptions, **kw) -> EstimateOptions:
    from dataclasses import replace

    return replace(opts, **kw)
