"""Latency-aware architecture search (FBNet / SqueezeNAS) over the segmentation family."""
