"""The base every part builds on: the clip format, typed configs, errors, checked outputs, run
directories, the worker pool, thread choice, loading without unpickling, plugin lookup.
It imports nothing of rlpf above it (tests/test_architecture.py).
"""
