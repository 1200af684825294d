"""Videos: MuJoCo offscreen rendering of clips and of tracking (reference | tracked).
"""
