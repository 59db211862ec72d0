"""vaspace benchmarks: every figure measured side by side with its baseline, in one run.

``python -m bench`` runs every section, each in its own process, and writes
BENCHMARKS.md and the plots in bench/plots; ``python -m bench --smoke`` does
the same with tiny sizes in seconds (the test suite runs it so it never
rots).  Each section also runs alone: ``python -m bench.switch``.
"""
