"""rlpf: Reinforcement Learning from Physical Feedback for generative world models."""
__version__ = "0.1.0"

# before anything imports torch: idle OpenMP threads sleep instead of spinning (rlpf/threads.py says why)
from rlpf.threads import prefer_passive_waiting as _prefer_passive_waiting

_prefer_passive_waiting()
