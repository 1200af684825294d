"""MuJoCo worlds and gymnasium environments (installed as rlpf.envs)."""
