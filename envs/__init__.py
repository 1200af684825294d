"""MuJoCo worlds and gymnasium environments (installed as rlpf.envs).

Importing this package registers ``rlpf/MotionTracking-v0`` (``rlpf.envs.motion_tracking``) with
gymnasium; the env module itself loads only when ``gym.make`` builds one.
"""
import gymnasium as _gym

if "rlpf/MotionTracking-v0" not in _gym.registry:
    _gym.register(id="rlpf/MotionTracking-v0", entry_point="rlpf.envs.motion_tracking:MotionTrackingEnv")
