"""rlpf: Reinforcement Learning from Physical Feedback for generative world models."""
__version__ = "0.1.0"
