"""Frames and tensors: clip sampling, transforms and loader backends over BAT list files."""
