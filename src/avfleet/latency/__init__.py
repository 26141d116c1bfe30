"""Latency measured on the target: a lookup table of operator units, and a whole-net predictor.

Used by compression (latency-weighted group sparsity, width snapping, budgets)
and by architecture search. Every number comes from a bench (avfleet.bench.profile),
never from MACs.
"""
