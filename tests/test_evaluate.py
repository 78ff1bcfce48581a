"""Evaluation helpers: the Fréchet distance and word classes of routing paths."""

import numpy as np

from model.evaluate import frechet_distance, word_class


def test_frechet_distance_is_zero_for_one_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert abs(frechet_distance(a, a)) < 1e-6
    near = frechet_distance(a, a + 0.1)
    far = frechet_distance(a, a + 1.0)
    assert 0 < near < far
    assert abs(far - 4.0) < 0.2  # mean shift of 1 in 4 dims, equal covariances


def test_word_classes():
    nouns = {"cat", "kitties"}
    assert word_class("kitties", nouns) == "noun"
    assert word_class("blue", nouns) == "adjective"
    assert word_class("small", nouns) == "adjective"
    assert word_class("on", nouns) == "other"
