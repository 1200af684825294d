"""Trackers, scripted controllers and control heads (installed as rlpf.policies)."""
