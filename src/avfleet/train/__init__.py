"""Training: segmentation models, the DPE ensemble, joint training + pruning, low-rank, torchrun."""
