"""Benchmarks of the dev cluster, the harness and the SDK: ``python -m bench --help``.

Everything runs against a dedicated compose project (``slurmsdk-bench``) so the test stack is never
touched. Timings are reported as median with min-max; comparisons are per-pair ratios of A/B runs
interleaved in the same process.
"""
