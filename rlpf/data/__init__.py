"""Physically valid, honestly labelled motion data: simulation with scripted controllers, the
corruptions the judge must catch, datasets with measured prompts and web-video-like artifacts.
"""
