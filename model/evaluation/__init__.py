"""Evaluation: the recognizer trained on real scenes, the composition scorer and learning curves."""
