"""The RAPHAEL denoiser: attention, MoE layers, edge head, blocks and the U-Net with its size presets."""
