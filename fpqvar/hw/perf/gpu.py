"""The GPU baseline as a roofline: the FP16 model, one kernel per workload operator.

kernel time = max(flops / peak_flops_per_s, bytes / bandwidth_bytes_per_s) + kernel_overhead_s;
latency = sum over kernels (batch-1 generation is a chain of dependent kernels); energy = board_watts *
latency. Bytes: weights (or cached K / V) once per kernel, activations in and out in FP16.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpqvar.hw.perf.accelerator import GPU
from fpqvar.model.workload import Op, WorkloadOptions, hadamard_flops, var_workload
from fpqvar.model.zoo import VARConfig, VQVAEConfig

ACT_BYTES = 2


@dataclass(frozen=True)
class GPUResult:
    gpu: str
    latency_s: float
    images_per_s: float
    energy_per_image_j: float
    kernels: int
    compute_bound_s: float
    memory_bound_s: float
    overhead_s: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def kernel_bytes(op: Op, gpu: GPU) -> float:
    """Bytes a kernel moves: weights (or K / V) + activations in and out (FP16)."""
    if op.kind in ("gemm", "attn_gemm", "conv"):
        acts = op.count * (op.m * op.k + op.m * op.n) * ACT_BYTES
        return op.weight_elems * gpu.weight_bytes_per_elem + op.kv_read_elems * ACT_BYTES + acts
    return 2 * op.elems * ACT_BYTES


def kernel_seconds(flops: float, nbytes: float, gpu: GPU) -> tuple[float, str]:
    """Roofline time of one kernel (without the launch overhead) and what bounds it."""
    tc, tm = flops / gpu.peak_flops_per_s, nbytes / gpu.bandwidth_bytes_per_s
    return (tc, "compute") if tc >= tm else (tm, "memory")


def estimate_gpu(var: VARConfig, vae: VQVAEConfig | None, gpu: GPU, batch_images: int = 1, cfg: bool = True,
                 vae_on_host: bool = True) -> GPUResult:
    """FP16 generation on the GPU roofline. ``vae_on_host`` excludes the VQVAE decoder, as for the FPGA."""
    ops = var_workload(var, vae, WorkloadOptions(batch_images=batch_images, cfg=cfg,
                                                 include_vae_decode=not vae_on_host))
    comp = mem = 0.0
    for op in ops:
        t, bound = kernel_seconds(op.flops if op.kind != "elementwise" else 0.0, kernel_bytes(op, gpu), gpu)
        if bound == "compute":
            comp += t
        else:
            mem += t
    overhead = len(ops) * gpu.kernel_overhead_s
    latency = comp + mem + overhead
    return GPUResult(gpu.name, latency, batch_images / latency, gpu.board_watts * latency / batch_images,
                     len(ops), comp, mem, overhead)


def gpu_hadamard_seconds(tokens: int, dim: int, block: int, gpu: GPU) -> float:
    """One blockdiag(H_block) transform of a (tokens x dim) FP16 activation on the GPU, as a dense batched
    matmul (2 * dim * block FLOPs per token, ``hadamard_flops(..., "dense")``); reads and writes the
    activation once and the block matrix once, plus one kernel overhead."""
    flops = tokens * hadamard_flops(dim, block, "dense")
    nbytes = 2 * tokens * dim * ACT_BYTES + block * block * ACT_BYTES
    return kernel_seconds(flops, nbytes, gpu)[0] + gpu.kernel_overhead_s
