"""Evaluation helpers: the Fréchet distance, the paired comparison, the table and word classes."""

import numpy as np

from model.evaluate import frechet_distance, markdown, paired_difference, word_class


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


def test_paired_difference_and_its_interval():
    same = [True, False] * 50
    assert paired_difference(same, same) == {"difference": 0.0, "ci95": [0.0, 0.0]}
    assert paired_difference([True] * 20, [False] * 20)["difference"] == 1.0
    ours = [True] * 60 + [False] * 40
    dense = [True] * 40 + [False] * 60  # ours wins 20 prompts, never loses
    result = paired_difference(ours, dense)
    assert abs(result["difference"] - 0.2) < 1e-9
    low, high = result["ci95"]
    assert 0.1 < low < 0.2 < high < 0.3


def test_markdown_shows_training_images_and_the_comparison():
    acc = {"identity": 0.5, "count": 1.0, "background": 1.0, "position": 0.5, "composition": 0.25}
    trained = {"images_seen": 108800, "steps": 1700}
    results = {
        "config_note": "8 prompts", "steps": 25, "cfg": 3.0, "recognizer_on_real": dict.fromkeys(acc, 1.0),
        "models": {
            "RAPHAEL-tiny": {"accuracy": acc, "fd": 1.0, "training": trained},
            "dense baseline": {"accuracy": acc, "fd": 2.0, "training": None},
        },
        "comparison": {"composition": {"difference": 0.05, "ci95": [-0.01, 0.11]}},
    }
    table = markdown(results)
    assert "| RAPHAEL-tiny | 108,800 (1,700 steps) | 50.0% | 100.0% | 100.0% | 50.0% | 25.0% | 1.00 |" in table
    assert "| dense baseline | ? |" in table
    assert "composition: +5.0 points (95% paired bootstrap interval -1.0 to +11.0)" in table
