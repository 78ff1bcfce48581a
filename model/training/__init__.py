"""Training: pre-training, preference tuning, what both share, checkpoints, bundles, plots and the curriculum."""
