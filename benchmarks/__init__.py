"""ESAN-RT benchmarks (``esan.bench``): latency, chunk quality, DCN kernel timing."""
