"""The physics judge: ``rlpf.score`` over the reward plugins (rewards/) and the tracking
controllers (policies/), the tracker interface and registry, the tracking report.
"""
