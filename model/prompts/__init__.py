"""Prompts: the seeded enhancer and the notes on what a bundle has learned (its trained domain)."""
