"""Evaluation helpers: the Fréchet distance, the paired comparison, best-of-n, the table and word classes."""

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from model.data.config import SceneConfig
from model.data.dataset import EmojiScenes
from model.data.scene import Scene, SceneObject
from model.evaluation import evaluate
from model.evaluation.evaluate import (
    EVAL_SEED,
    FAILURE_MODES,
    candidate_seed,
    failure_mode,
    frechet_distance,
    generate_and_score,
    heldout_prompts,
    markdown,
    paired_difference,
    prompt_wording,
    same_training,
    samples_stem,
    stage_images,
    word_class,
)
from model.evaluation.recognizer import load_default, objects_in_place
from model.evaluation.reward import METRICS_FILE, RewardModel
from model.pipeline.bundled import load_bundle
from model.pipeline.pipeline_raphael import RaphaelPipeline
from model.pipeline.schedule import default_scheduler
from model.unet.unet_raphael import RaphaelUNet
from tests.test_train import TINY


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


def test_equal_training_compares_every_stage():
    stage1, short_stage1 = {"images_seen": 6400, "steps": 100}, {"images_seen": 3200, "steps": 50}
    stage2 = {"images_seen": 1600, "steps": 25, "continued_from": stage1}
    assert stage_images(stage2) == [6400, 1600]
    assert same_training([stage2, {**stage2}])
    assert not same_training([stage2, {**stage2, "continued_from": short_stage1}])  # equal last stages only
    one_stage = {"images_seen": 8000, "steps": 125}
    assert not same_training([stage2, one_stage])  # equal sums would not do either: one stage is not two
    assert not same_training([stage2, None])


def test_markdown_shows_training_images_and_the_comparison():
    acc = {"identity": 0.5, "count": 1.0, "background": 1.0, "position": 0.5, "composition": 0.25}
    trained = {"images_seen": 108800, "steps": 1700}
    results = {
        "config_note": "8 prompts",
        "steps": 25,
        "cfg": 3.0,
        "recognizer_on_real": dict.fromkeys(acc, 1.0),
        "models": {
            "RAPHAEL-tiny": {
                "accuracy": acc,
                "fd": 1.0,
                "training": trained,
                "n": 8,
                "identity_failures": {"nothing drawn": 3, "wrong emoji in place": 1, "right emoji, wrong place": 0},
                "composition_by_kind": {"1 emoji ×1": [2, 4], "2 emoji ×2": [0, 4]},
                "identity_by_kind": {"1 emoji ×1": [3, 4], "2 emoji ×2": [1, 4]},
                "identity_by_wording": {"held-out synonym": [1, 2], "trained words": [3, 6]},
                "objects_in_place_by_kind": {"1 emoji ×1": [3, 4], "3 emoji ×1": [5, 12]},
            },
            "dense baseline": {"accuracy": acc, "fd": 2.0, "training": {**trained, "continued_from": trained}},
            "untracked": {"accuracy": acc, "fd": 2.0, "training": None},
        },
        "comparison": {"composition": {"difference": 0.05, "ci95": [-0.01, 0.11]}},
    }
    table = markdown(results)
    assert "8 prompts; 25 DDIM steps, CFG 3.0." in table  # files written before --sampler were DDIM
    assert "25 Euler steps" in markdown({**results, "sampler": "Euler"})
    assert "| RAPHAEL-tiny | 108,800 (1,700 steps) | 50.0% | 100.0% | 100.0% | 50.0% | 25.0% | 1.00 |" in table
    assert "| dense baseline | 217,600 (1,700 + 1,700 steps) |" in table  # a later stage counts the earlier
    assert "| untracked | ? |" in table
    assert (
        "RAPHAEL-tiny minus dense baseline, composition: +5.0 points (95% paired bootstrap interval -1.0 to +11.0)"
        in table
    )
    assert "not read in place: nothing drawn 3, wrong emoji in place 1 (of 8)." in table
    kinds = "by kind of prompt (different emoji × most of one)"
    assert f"composition {kinds}: 1 emoji ×1 50% (2/4), 2 emoji ×2 0% (0/4)." in table
    assert (
        "identity by wording (an emoji named by a synonym training never used, or trained words only): "
        "held-out synonym 50% (1/2), trained words 50% (3/6)." in table
    )
    assert (
        "RAPHAEL-tiny, objects read as the stated emoji in their place, by kind of prompt: 1 emoji ×1 75% (3/4), "
        "3 emoji ×1 42% (5/12)." in table
    )
    assert "composition by wording" not in table  # only the groupings a results file holds
    assert f"identity {kinds}: 1 emoji ×1 75% (3/4), 2 emoji ×2 25% (1/4)." in table


def test_objects_in_place_counts_each_object_of_a_scene():
    objects = [SceneObject(e, 1, p, "small") for e, p in (("cat", "left"), ("dog", "right"), ("sun", "top"))]
    scene = Scene("32x32", 32, 32, "red", "flat", objects)
    read = {"slots": {"left": ("cat", 1), "right": ("sun", 1), "centre": ("dog", 1)}, "objects": []}
    assert objects_in_place(read, scene) == 1  # the cat in place; the dog drawn in the wrong place; no sun on top
    assert objects_in_place({"slots": {}, "objects": []}, scene) == 0


def test_failure_modes_tell_missing_wrong_and_misplaced_apart():
    scene = Scene("32x32", 32, 32, "blue", "flat", [SceneObject("cat", 1, "left", "large")])

    def read(*objects: tuple[str, int, str]) -> dict:
        return {"objects": list(objects), "slots": {position: (emoji, n) for emoji, n, position in objects}}

    assert failure_mode(read(("cat", 1, "left")), scene) is None
    assert failure_mode(read(), scene) == FAILURE_MODES[0]
    assert failure_mode(read(("dog", 1, "left")), scene) == FAILURE_MODES[1]
    assert failure_mode(read(("cat", 1, "right")), scene) == FAILURE_MODES[2]
    assert failure_mode(read(("dog", 1, "top")), scene) == FAILURE_MODES[3]


def test_prompt_wording_finds_the_synonyms_training_never_used():
    """Only held-out captions name an emoji by its last synonym ("cycle" for a bicycle), as a whole word."""
    bicycle = Scene("1:1", 32, 32, "blue", "flat", [SceneObject("bicycle", 2, "left", "medium")])
    assert prompt_wording("two cycles on the left on blue, flat", bicycle) == "held-out synonym"
    assert prompt_wording("A Cycle on the left on blue, flat", bicycle) == "held-out synonym"
    assert prompt_wording("two bicycles on the left on blue, flat", bicycle) == "trained words"
    assert prompt_wording("a cycle on the left", replace(bicycle, objects=[])) == "trained words"  # not this scene's
    config = SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",))
    train = EmojiScenes(config, seed=0)
    assert {prompt_wording(*train.sample(i)[1:]) for i in range(400)} == {"trained words"}
    heldout = [item for group in heldout_prompts(config, 256).values() for item in group]
    wordings = [prompt_wording(caption, scene) for _, caption, scene in heldout]
    assert 0 < wordings.count("held-out synonym") < len(wordings) / 2


def test_validation_prompts_are_other_held_out_prompts():
    """Settings such as CFG are chosen on another seed's prompts, so the reported prompts stay unseen."""
    config = SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",))

    def captions(groups: dict) -> set[str]:
        return {caption for group in groups.values() for _, caption, _ in group}

    test, validation = heldout_prompts(config, 64), heldout_prompts(config, 64, seed=7)
    assert captions(test) == captions(heldout_prompts(config, 64))  # the reported set is fixed
    assert len(captions(test) & captions(validation)) <= 2  # independent draws from the same held-out split
    scenes = [scene for group in validation.values() for _, _, scene in group]
    assert all(scene.objects for scene in scenes) and {len(scene.objects) for scene in scenes} == {1, 2}


def test_a_wording_draw_keeps_only_prompts_of_that_wording():
    """The same held-out draw, skipping the other wording: a plain draw's prompts of that wording come first."""
    config = SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",))
    held = [item for group in heldout_prompts(config, 12, wording="held-out synonym").values() for item in group]
    assert len(held) == 12 and all(prompt_wording(caption, scene) == "held-out synonym" for _, caption, scene in held)
    plain = [item for group in heldout_prompts(config, 64).values() for item in group]
    in_plain = {caption for _, caption, scene in plain if prompt_wording(caption, scene) == "held-out synonym"}
    assert 0 < len(in_plain) < 12 and in_plain <= {caption for _, caption, _ in held}
    with pytest.raises(ValueError, match="worded"):
        heldout_prompts(config, 2, wording="no such wording")


def test_generate_and_score_counts_every_prompt_once():
    """The bundled model on four held-out prompts at 2 steps: each prompt passes identity or has one failure mode."""
    config = SceneConfig(num_emoji=30, max_objects=1, max_count=1, styles=("flat",))
    groups = heldout_prompts(config, 4)
    pipe = load_bundle()
    pipe.set_progress_bar_config(disable=True)
    result = generate_and_score(pipe, load_default(), groups, steps=2, cfg=3.0, batch=4)
    assert result["n"] == 4 and all(len(v) == 4 for v in result["per_prompt"].values())
    assert sum(result["per_prompt"]["identity"]) + sum(result["identity_failures"].values()) == 4
    assert np.isfinite(result["fd"]) and len(result["grid"]) == 4
    for metric in ("composition", "identity"):
        kinds = result[f"{metric}_by_kind"]
        assert set(kinds) == {"1 emoji ×1"} and kinds["1 emoji ×1"] == [sum(result["per_prompt"][metric]), 4]
        wordings = result[f"{metric}_by_wording"].values()
        assert sum(ok for ok, _ in wordings) == sum(result["per_prompt"][metric]) and sum(n for _, n in wordings) == 4
    assert result["prompts"] == [caption for group in groups.values() for _, caption, _ in group]
    assert result["objects_in_place_by_kind"] == {"1 emoji ×1": [sum(result["per_prompt"]["identity"]), 4]}


def test_samples_stem_keeps_short_names_and_never_overwrites_an_earlier_grid():
    assert samples_stem("RAPHAEL-tiny", {}) == "raphael-tiny"
    assert samples_stem("dense baseline", {"RAPHAEL-tiny": {}}) == "dense"
    assert samples_stem("RAPHAEL-tiny (stage 3)", {"RAPHAEL-tiny (stage 4)": {}}) == "raphael-tiny-stage-3"


@pytest.mark.parametrize("experts", [2, 0], ids=["moe", "dense"])
def test_main_analyses_routing_only_for_a_model_with_space_moe(tmp_path, monkeypatch, experts):
    """A dense baseline scored alone has no routers, so its results carry the scores without a routing analysis."""
    torch.manual_seed(0)
    unet = RaphaelUNet(**TINY, num_space_experts=experts, num_time_experts=experts)
    RaphaelPipeline(unet=unet, scheduler=default_scheduler()).save_pretrained(
        tmp_path / "tiny", include_text_encoder=False
    )
    args = ["--model", str(tmp_path / "tiny"), "--n", "2", "--steps", "1", "--batch", "2", "--num-emoji", "30"]
    args += ["--max-objects", "1", "--max-count", "1", "--styles", "flat", "--out", str(tmp_path / "eval")]
    monkeypatch.setattr(sys, "argv", ["evaluate", *args])
    full_analysis = evaluate.routing_analysis
    monkeypatch.setattr(evaluate, "routing_analysis", lambda pipe, config: full_analysis(pipe, config, n=60))
    evaluate.main()
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["models"]["RAPHAEL-tiny"]["n"] == 2
    assert ("routing" in results) == bool(experts)
    assert (tmp_path / "eval" / "results.md").read_text().count("Routing paths") == bool(experts)


# -- best-of-n --------------------------------------------------------------------------------------

BEST_OF_CONFIG = SceneConfig(num_emoji=30, max_objects=2, max_count=2, styles=("flat",))


@pytest.fixture(scope="module")
def tiny_pipe() -> RaphaelPipeline:
    """An untrained dense tiny pipeline: its images are noise, but they are deterministic and differ by seed."""
    torch.manual_seed(0)
    unet = RaphaelUNet(**TINY, num_space_experts=0, num_time_experts=0)
    pipe = RaphaelPipeline(unet=unet, scheduler=default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny_reward() -> RewardModel:
    """An untrained head on the shipped recognizer's trunk, its weights fixed by the seed."""
    torch.manual_seed(0)
    return RewardModel.from_recognizer(hidden_dim=8)


@pytest.fixture(scope="module")
def best_of_prompts() -> dict:
    return heldout_prompts(BEST_OF_CONFIG, 6)


def run_best_of(pipe: RaphaelPipeline, groups: dict, reward: RewardModel | None = None, candidates: int = 1) -> dict:
    """Six prompts in batches of four (so a bucket takes two calls), one step."""
    return generate_and_score(pipe, load_default(), groups, 1, 2.0, 4, reward=reward, candidates=candidates)


def without_grid(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "grid"}


def test_candidate_seeds_start_at_the_prompts_own_and_stay_apart_from_its_neighbours():
    seeds = [EVAL_SEED + i for i in range(64)]  # the prompts' own seeds, consecutive as generate_and_score sets them
    assert [candidate_seed(s, 0) for s in seeds] == seeds
    later = [candidate_seed(s, c) for s in seeds for c in (1, 2, 3)]
    assert len(set(later)) == len(later) and not set(later) & set(seeds)
    assert candidate_seed(EVAL_SEED, 2) == candidate_seed(EVAL_SEED, 2)  # derived, not drawn


def test_best_of_keeps_the_plain_draw_as_its_first_candidate(tiny_pipe, tiny_reward, best_of_prompts):
    """Best-of-1 inside a best-of-3 run is the plain run, image for image, so the two are paired on every prompt."""
    plain = run_best_of(tiny_pipe, best_of_prompts)
    best = run_best_of(tiny_pipe, best_of_prompts, tiny_reward, candidates=3)
    b = best.pop("best_of")
    assert len(best["grid"]) == len(plain["grid"]) == 6
    for (_, ours, _), (_, theirs, _) in zip(best["grid"], plain["grid"], strict=True):
        assert np.array_equal(ours, theirs)
    assert without_grid(best) == without_grid(plain)  # the model's own entry is unchanged by --best-of
    assert b["first"] == without_grid(plain)
    assert b["candidates"] == 3 and len(b["picked_index"]) == 6 and set(b["picked_index"]) <= {0, 1, 2}
    assert [c[0] for c in b["candidate_composition"]] == plain["per_prompt"]["composition"]
    assert b["picked"]["prompts"] == plain["prompts"] and len(b["picked"]["grid"]) == 6
    kinds = {evaluate.prompt_kind(scene) for group in best_of_prompts.values() for _, _, scene in group}
    assert set(b["difference_by_kind"]["composition"]) == set(b["oracle"]["composition_by_kind"]) == kinds
    with pytest.raises(ValueError, match="needs a reward model"):
        run_best_of(tiny_pipe, best_of_prompts, None, candidates=2)


def test_best_of_scores_the_candidate_the_reward_model_ranks_first(
    tiny_pipe, tiny_reward, best_of_prompts, monkeypatch
):
    """A scorer that prefers the brightest image: the picked image is the brightest of the candidates it was shown."""
    shown: list[list[np.ndarray]] = []

    def brightest(images, prompts):
        shown.append([np.asarray(image) for image in images])
        return torch.tensor([float(np.asarray(image, float).mean()) for image in images])

    monkeypatch.setattr(tiny_reward, "score", brightest)
    result = run_best_of(tiny_pipe, best_of_prompts, tiny_reward, candidates=3)
    b = result["best_of"]
    assert len(shown) == 6 and all(len(candidates) == 3 for candidates in shown)  # one call per prompt
    for prompt, candidates in enumerate(shown):
        assert not np.array_equal(candidates[0], candidates[1])  # other seeds, other images
        assert np.array_equal(candidates[0], result["grid"][prompt][1])  # the first candidate is the plain image
        best = int(np.argmax([candidate.astype(float).mean() for candidate in candidates]))
        assert b["picked_index"][prompt] == best
        assert np.array_equal(b["picked"]["grid"][prompt][1], candidates[best])
        composed = b["candidate_composition"][prompt][best]
        assert b["picked"]["per_prompt"]["composition"][prompt] == composed == b["picked"]["grid"][prompt][2]
    assert set(b["picked_index"]) != {0}  # the check above saw picks other than the first


def test_the_oracle_bounds_the_pick_and_the_first_candidate(tiny_pipe, tiny_reward, best_of_prompts, monkeypatch):
    """A judge that passes images of even pixel sum; a reranker that knows it reaches the oracle, one that
    prefers failures falls to or below the first candidate."""
    recognized = evaluate.score

    def even_sum_composes(images, scenes, recognizer=None):
        result = recognized(images, scenes, recognizer)
        result["composition"] = [int(image.astype(np.int64).sum()) % 2 == 0 for image in images]
        return result

    def passes(image) -> bool:
        return int(np.asarray(image, np.int64).sum()) % 2 == 0

    monkeypatch.setattr(evaluate, "score", even_sum_composes)
    for prefer in (True, False):

        def reranker(images, prompts, prefer=prefer):
            return torch.tensor([float(passes(image) == prefer) for image in images])

        monkeypatch.setattr(tiny_reward, "score", reranker)
        b = run_best_of(tiny_pipe, best_of_prompts, tiny_reward, candidates=3)["best_of"]
        first = b["first"]["accuracy"]["composition"]
        picked = b["picked"]["accuracy"]["composition"]
        oracle = b["oracle"]["composition"]
        assert oracle >= picked >= 0 and oracle >= first
        assert b["oracle"]["per_prompt"] == [any(c) for c in b["candidate_composition"]]
        assert b["picked"]["per_prompt"]["composition"] == [
            c[i] for c, i in zip(b["candidate_composition"], b["picked_index"], strict=True)
        ]
        assert first < oracle  # the judge passed a later candidate where the first failed
        if prefer:
            assert picked == oracle and b["oracle_gap_closed"] == 1.0
            assert b["difference"]["composition"]["difference"] == pytest.approx(oracle - first)
        else:
            assert picked <= first and b["oracle_gap_closed"] <= 0
        low, high = b["difference"]["composition"]["ci95"]
        assert low <= b["difference"]["composition"]["difference"] <= high


def tiny_model_args(tmp_path) -> list[str]:
    """Flags of a fast main() run on a dense tiny pipeline saved under ``tmp_path``."""
    torch.manual_seed(0)
    unet = RaphaelUNet(**TINY, num_space_experts=0, num_time_experts=0)
    RaphaelPipeline(unet=unet, scheduler=default_scheduler()).save_pretrained(
        tmp_path / "tiny", include_text_encoder=False
    )
    args = ["--model", str(tmp_path / "tiny"), "--n", "3", "--steps", "1", "--batch", "2", "--num-emoji", "30"]
    return args + ["--max-objects", "2", "--max-count", "2", "--styles", "flat"]


def test_main_reports_best_of_beside_the_plain_run(tmp_path, monkeypatch, tiny_reward):
    """--best-of 3 leaves the model's own scores as a plain run has them and adds a best_of section."""
    tiny_reward.save_pretrained(tmp_path / "reward")
    heldout = {
        "pairwise": {"accuracy": 0.75, "ci95": [0.7, 0.8], "n": 348},
        "votes": {"accuracy": None, "ci95": None, "n": 0},
    }
    (tmp_path / "reward" / METRICS_FILE).write_text(json.dumps({"heldout": heldout, "raters_ceiling": {}}))
    args = tiny_model_args(tmp_path)
    runs = {}
    for name, extra in (("plain", []), ("best", ["--best-of", "3", "--reward", str(tmp_path / "reward")])):
        monkeypatch.setattr(sys, "argv", ["evaluate", *args, *extra, "--out", str(tmp_path / name)])
        evaluate.main()
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert "best_of" not in runs["plain"]
    assert runs["best"]["models"] == runs["plain"]["models"]
    b = runs["best"]["best_of"]
    assert (b["model"], b["candidates"], b["reward_model"]) == ("RAPHAEL-tiny", 3, str(tmp_path / "reward"))
    assert b["reward_metrics"] == {"heldout": heldout, "raters_ceiling": None}
    assert b["trunk_is_the_judge"]  # from_recognizer copied the shipped recognizer, the evaluator's judge
    assert b["first"]["per_prompt"] == runs["plain"]["models"]["RAPHAEL-tiny"]["per_prompt"]
    assert "grid" not in b["picked"] and (tmp_path / "best" / "samples_raphael-tiny_best-of-3.png").is_file()
    table = (tmp_path / "best" / "results.md").read_text()
    assert "Best-of-3 for RAPHAEL-tiny" in table
    assert "held-out pairwise accuracy 75.0% (95% 70.0–80.0%, 348 pairs), no held-out votes) picks one." in table
    assert (
        "**Caveat:** the reward model's image features come from the recognizer's trunk (the very weights the "
        "evaluator judges with)" in table
    )
    assert "| oracle: any of the 3 composes correctly | – | – | – | – |" in table
    assert "Picked minus first, composition:" in table


def test_best_of_needs_a_reward_model(tmp_path, monkeypatch, capsys):
    """Each misuse of the two flags is one sentence naming the flag, before any model is loaded."""
    (tmp_path / "empty").mkdir()
    for flags, message in (
        (["--best-of", "4"], "--best-of 4 needs --reward DIR, the reward model that picks among the candidates."),
        (["--reward", str(tmp_path / "empty")], "--reward picks among --best-of candidates"),
        (["--best-of", "0"], "--best-of must be 1 or more, not 0."),
        (["--best-of", "2", "--reward", str(tmp_path / "empty")], f"--reward {tmp_path / 'empty'} holds no reward"),
    ):
        monkeypatch.setattr(sys, "argv", ["evaluate", *flags, "--out", str(tmp_path / "eval")])
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main()
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_markdown_shows_best_of_by_kind_and_the_caveat_for_another_trunk():
    acc = {"identity": 0.5, "count": 1.0, "background": 1.0, "position": 0.5, "composition": 0.25}
    picked_acc = {**acc, "composition": 0.5}
    results = {
        "config_note": "8 prompts",
        "steps": 25,
        "cfg": 2.0,
        "recognizer_on_real": dict.fromkeys(acc, 1.0),
        "models": {"RAPHAEL-tiny": {"accuracy": acc, "fd": 1.0, "training": None}},
        "best_of": {
            "model": "RAPHAEL-tiny",
            "candidates": 4,
            "reward_model": "runs/reward",
            "reward_metrics": None,
            "trunk_is_the_judge": False,
            "first": {"accuracy": acc, "fd": 1.0, "composition_by_kind": {"1 emoji ×1": [2, 4], "2 emoji ×2": [0, 4]}},
            "picked": {
                "accuracy": picked_acc,
                "fd": 1.5,
                "composition_by_kind": {"1 emoji ×1": [3, 4], "2 emoji ×2": [1, 4]},
            },
            "oracle": {"composition": 0.75, "composition_by_kind": {"1 emoji ×1": [4, 4], "2 emoji ×2": [2, 4]}},
            "difference": {"composition": {"difference": 0.25, "ci95": [0.0, 0.5]}},
            "difference_by_kind": {
                "composition": {
                    "1 emoji ×1": {"difference": 0.25, "ci95": [0.0, 0.75]},
                    "2 emoji ×2": {"difference": 0.25, "ci95": [0.0, 0.75]},
                }
            },
            "oracle_gap_closed": 0.5,
        },
    }
    table = markdown(results)
    assert "the reward model `runs/reward` (no metrics.json beside it, so its held-out accuracy is unknown)" in table
    assert "(a frozen copy of a recognizer trunk whose weights differ from the evaluator's, a related model)" in table
    assert "| first candidate (best-of-1) | 50.0% | 100.0% | 100.0% | 50.0% | 25.0% | 1.00 |" in table
    assert "| picked by the reward model | 50.0% | 100.0% | 100.0% | 50.0% | 50.0% | 1.50 |" in table
    assert "| oracle: any of the 4 composes correctly | – | – | – | – | 75.0% | – |" in table
    assert "Picked minus first, composition: +25.0 points (95% paired bootstrap interval +0.0 to +50.0)." in table
    assert "The picks realise 50% of the 50.0 points an oracle reranker would gain over the first candidate." in table
    assert "| 2 emoji ×2 | 4 | 0% | 25% | 50% | +25.0 (+0.0 to +75.0) |" in table
    assert "Best-of" not in markdown({key: value for key, value in results.items() if key != "best_of"})
