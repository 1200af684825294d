"""The PhysBrain-style control head: task facts, expert demonstrations, the head on a world
model's hidden states, the evaluation harness, the ``rlpf control`` comparison.
"""
