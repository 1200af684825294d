"""RLPF itself: physical feedback as TRL reward functions, the GRPO trainer (any causal LM + a
MotionCodec), scoring ahead, the SFT-Filter baseline, the ``rlpf train`` pipeline and its report.
"""
