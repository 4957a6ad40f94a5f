"""How far apart two computations of one report may be and still count as the same."""

# A float32 model's report by two routes (the head on whole batches, or the fusion of per-item
# encodings) differs by float32 rounding, which depends on the CPU's kernels: 0 on AVX2
# machines, up to 2.9e-6 on an AVX-512/AMX machine (logits of order 10). 30x that margin.
FLOAT32_REPORT_TOLERANCE = 1e-4
