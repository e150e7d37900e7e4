"""What the search benchmark's numbers mean, written from the numbers of the run."""

from __future__ import annotations

from typing import Any

BATCH = 32
SCAN_COPY = "LocalVectorStore float32 + bfloat16 scan copy (exact)"


def find(contenders: dict[str, Any], prefix: str) -> tuple[str, dict[str, Any]] | None:
    return next(((k, v) for k, v in contenders.items() if k.startswith(prefix)), None)


def notes(data: dict[str, Any]) -> list[str]:
    """What the numbers mean, computed from this run's numbers."""
    notes: list[str] = []
    for name, result in data.get("datasets", {}).items():
        cs = result["contenders"]
        float16 = _float16_note(name, cs)
        if float16:
            notes.append(float16)
        batch = result.get("batch", {})
        store_batch = find(batch, "LocalVectorStore.query")
        if store_batch and name.startswith("random 100k x 1024"):
            n, d = 100_000, 1024
            per_query = store_batch[1]["ms_per_query"]
            gflops = 2 * n * d / (per_query * 1e-3) / 1e9
            notes.append(
                f"{name}: a batch of {BATCH} is a {BATCH} x {n:,} x {d} matrix product, "
                f"compute-bound: the float32 store's {per_query:.2f} ms per query (product and "
                f"selection) is {gflops:.0f} GFLOP/s of product; 1.6 ms per query needs "
                f"{2 * n * d / 1.6e-3 / 1e9:.0f} GFLOP/s from two shared cores, more than "
                "OpenBLAS's sgemm reaches here for this shape."
            )
            scan_batch = batch.get(SCAN_COPY)
            if scan_batch:
                notes.append(
                    f'{name}: with `scan_dtype="bfloat16"` the same float32 store answers a '
                    f"batch of {BATCH} at {scan_batch['ms_per_query']:.2f} ms per query, with "
                    "the same results: NumKong multiplies the bfloat16 copy (native bfloat16 dot "
                    "instructions on this CPU, twice the float32 rate), and every row within the "
                    "copy's error bound of the 10th best is re-scored from the float32 vectors. "
                    "The copy costs half the float32 memory again."
                )
            f16_batch = find(batch, "LocalVectorStore float16")
            if f16_batch and "numkong" in f16_batch[0]:
                notes.append(
                    f"{name}: the float16 store (NumKong, half the memory) answers a batch of "
                    f"{BATCH} at {f16_batch[1]['ms_per_query']:.2f} ms per query: its packed "
                    "kernel widens float16 to float32 in registers, so the same products read "
                    "half the bytes."
                )
        if name.startswith("random") and name.endswith("x 1024"):
            approx = [
                f"{k} {v['recall_at_10']:.2f}"
                for k, v in cs.items()
                if "funnel" in k or "HNSW" in k
            ]
            if approx:
                notes.append(
                    f"{name}: recall@10 of the approximate paths on random vectors: "
                    + ", ".join(approx)
                    + ". Random 1024-d queries have no near neighbours (every similarity is "
                    "about 0) and no dimension matters more than another, the worst case for "
                    "both a graph and a Matryoshka prefix; use them on real embeddings (see the "
                    "structured rows) and keep exact search for recall guarantees."
                )
    return notes


def _float16_note(name: str, cs: dict[str, Any]) -> str | None:
    """What the float16 store's time says (None without a float16 contender)."""
    exact = find(cs, "LocalVectorStore.query")
    f16 = find(cs, "LocalVectorStore float16")
    sq = find(cs, "faiss IndexScalarQuantizer fp16")
    if not (exact and f16):
        return None
    slow = cs.get("LocalVectorStore float16 (exact, numpy kernel)")
    took = f16[1]["speedup_vs_exact"] ** -1
    if "numkong" in f16[0]:
        text = (
            f"{name}: the float16 store with NumKong's kernels (extra `simd`) takes "
            f"{took:.2f}x the float32 time at half the memory, with the same results "
            "(candidates within the kernel's error bound are re-scored in float64)."
        )
        if slow:
            text += (
                f" With numpy alone it takes {slow['speedup_vs_exact'] ** -1:.1f}x: "
                "numpy has no float16 matrix product and converts float16 to float32 "
                "in scalar code."
            )
    else:
        text = (
            f"{name}: the float16 store takes {took:.1f}x the float32 time at half the "
            "memory: numpy has no float16 matrix product and its float16 -> float32 "
            "conversion is scalar code; install the `simd` extra (NumKong) for a "
            "float16 kernel."
        )
    if sq:
        text += (
            " For comparison, faiss's SIMD fp16 scalar quantizer (same half memory) "
            f"answers in {sq[1]['median_ms']:.1f} ms against "
            f"{exact[1]['median_ms']:.1f} ms for the float32 store "
            f"({sq[1]['median_ms'] / exact[1]['median_ms']:.2f}x, recall@10 "
            f"{sq[1]['recall_at_10']:.4f})."
        )
    return text
