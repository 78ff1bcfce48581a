"""GenerationService on a tiny random Stable Diffusion pipeline: provenance, seeds, samplers, sizes."""

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.generation import GenerationRequest, GenerationService
from app.reranker import Reranker
from feedback.images import image_provenance
from model.pipeline.buckets import ASPECT_BUCKETS, bucket_size
from model.pipeline.bundled import DEFAULT_BUNDLE
from model.pipeline.identity import model_name, weights_hash
from model.pipeline.limits import MAX_IMAGES, MAX_SEED
from model.pipeline.samplers import SAMPLERS

STORE_KEYS = {
    "prompt", "enhanced_prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "width", "height",
    "model_name", "model_hash", "app_version", "category",
}  # fmt: skip


@pytest.fixture(scope="module")
def service(tiny_sd_dir: Path) -> GenerationService:
    return GenerationService(tiny_sd_dir, device="cpu", torch_threads=1)


def request(**overrides: object) -> GenerationRequest:
    values = {"prompt": "two cats on a red background", "steps": 3, "cfg": 5.0, "seed": 11, "num_images": 2}
    return GenerationRequest(**{**values, **overrides})


def pixels(image: object) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_provenance_is_complete(service: GenerationService, tiny_sd_dir: Path) -> None:
    result = service.run(request(enhanced_prompt="two cats, flat", negative_prompt="blurry"))
    p = result.provenance
    assert STORE_KEYS <= p.keys()
    assert (p["prompt"], p["enhanced_prompt"], p["negative_prompt"]) == (
        "two cats on a red background",
        "two cats, flat",
        "blurry",
    )
    assert (p["seed"], p["seeds"], p["steps"], p["cfg"], p["sampler"]) == (11, [11, 12], 3, 5.0, "DDIM")
    assert (p["width"], p["height"]) == result.images[0].size == (64, 64)
    assert p["model_name"] == "tiny-sd" and p["model_class"] == "StableDiffusionPipeline"
    assert p["category"] == "animal"
    assert p["scheduler"] == "DDIMScheduler" and p["scheduler_config"]["num_train_timesteps"] == 1000
    assert p["app_version"] == service.app_version and p["diffusers_version"] and p["torch_version"]


def test_best_of_n_shows_the_candidates_the_reward_model_ranks_highest(
    tiny_sd_dir: Path, reward_model_dir: Path, service: GenerationService
) -> None:
    reranker = Reranker(reward_model_dir)
    ranked = GenerationService(tiny_sd_dir, device="cpu", torch_threads=1, reranker=reranker)
    result = ranked.run(request(num_images=2, best_of=3, seed=11))
    candidates = service.run(request(num_images=6, seed=11))  # the six candidates, drawn in one batch
    order, scores = reranker.rank(candidates.images, request().model_prompt)
    assert result.seeds == [11 + i for i in order[:2]]
    for image, index in zip(result.images, order[:2], strict=True):
        assert np.array_equal(pixels(image), pixels(candidates.images[index]))
    p = result.provenance
    assert (p["best_of"], p["num_images"], p["seed"], p["seeds"]) == (3, 2, 11, result.seeds)
    assert p["reward_model"] == reranker.version and p["reward_scores"] == [round(scores[i], 4) for i in order[:2]]
    assert p["reward_scores"][0] >= p["reward_scores"][1]
    alone = service.run(request(num_images=1, seed=result.seeds[1]))  # an image's own seed regenerates it
    assert np.array_equal(pixels(alone.images[0]), pixels(result.images[1]))
    assert image_provenance(p, 1)["reward_score"] == p["reward_scores"][1]


def test_best_of_n_beyond_one_pipeline_call_and_without_a_reward_model(
    tiny_sd_dir: Path, reward_model_dir: Path, service: GenerationService
) -> None:
    ranked = GenerationService(tiny_sd_dir, device="cpu", torch_threads=1, reranker=Reranker(reward_model_dir))
    steps: list[tuple[int, int]] = []
    result = ranked.run(request(num_images=3, best_of=4, steps=2), progress=lambda i, n: steps.append((i, n)))
    assert len(result.images) == 3 and len(set(result.seeds)) == 3 and max(result.seeds) < 11 + 12
    assert steps == [(i, 4) for i in range(1, 5)]  # 12 candidates: two pipeline calls of at most 8, 2 steps each
    with pytest.raises(ValueError, match="^Best of n needs a reward model"):
        service.run(request(best_of=2))


def test_weights_hash_is_sha256_of_the_weight_files(service: GenerationService, tiny_sd_dir: Path) -> None:
    digest = hashlib.sha256()
    for path in sorted(tiny_sd_dir.rglob("*.safetensors")):
        digest.update(path.relative_to(tiny_sd_dir).as_posix().encode())
        digest.update(path.read_bytes())
    assert service.model_hash == weights_hash(tiny_sd_dir) == digest.hexdigest()
    assert service.model_version == f"tiny-sd@{digest.hexdigest()[:12]}"


def test_same_seed_same_images(service: GenerationService) -> None:
    first, second = service.run(request()), service.run(request())
    for a, b in zip(first.images, second.images, strict=True):
        assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(first.images[0]), pixels(first.images[1]))


def test_each_image_is_reproducible_alone(service: GenerationService) -> None:
    batch = service.run(request(num_images=3))
    alone = service.run(request(seed=batch.seeds[2], num_images=1))
    assert batch.seeds == [11, 12, 13]
    # Batched and single runs may differ in the last bit of float maths, never more than a level or two.
    assert np.abs(pixels(batch.images[2]) - pixels(alone.images[0])).max() <= 2
    single = image_provenance(batch.provenance, 2)
    assert (single["seed"], single["batch_seed"], single["batch_index"]) == (13, 11, 2)
    assert "seeds" not in single


def test_random_seed_is_drawn_and_reported(service: GenerationService) -> None:
    result = service.run(request(seed=None, num_images=2))
    seed = result.provenance["seed"]
    assert (
        isinstance(seed, int) and 0 <= seed <= MAX_SEED - MAX_IMAGES + 1
    )  # every image's seed (seed + i) stays a valid seed
    assert result.seeds == [seed, seed + 1]
    again = service.run(request(seed=seed, num_images=1))
    assert np.abs(pixels(again.images[0]) - pixels(result.images[0])).max() <= 2


def test_samplers_switch_and_switch_back(service: GenerationService) -> None:
    images = {}
    for sampler in SAMPLERS:
        result = service.run(request(sampler=sampler, num_images=1))
        assert result.provenance["scheduler"] == SAMPLERS[sampler].__name__
        images[sampler] = pixels(result.images[0])
    assert not np.array_equal(images["DDIM"], images["Euler"])
    assert not np.array_equal(images["DDIM"], images["DPM-Solver++"])
    ddim_again = service.run(request(sampler="DDIM", num_images=1))
    assert np.array_equal(pixels(ddim_again.images[0]), images["DDIM"])


@pytest.mark.parametrize("aspect", list(ASPECT_BUCKETS))
def test_aspect_buckets_set_the_size(service: GenerationService, aspect: str) -> None:
    height, width = bucket_size(aspect, 64)
    assert service.size_for(aspect) == (height, width)
    result = service.run(request(aspect=aspect, steps=1, num_images=1))
    assert result.images[0].size == (width, height)
    assert (result.provenance["width"], result.provenance["height"], result.provenance["aspect"]) == (
        width,
        height,
        aspect,
    )


def test_progress_reports_every_step(service: GenerationService) -> None:
    calls: list[tuple[int, int]] = []
    service.run(request(steps=4, num_images=1), progress=lambda step, total: calls.append((step, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_long_prompt_warns_about_truncation(service: GenerationService) -> None:
    assert service.prompt_warnings("a cat") == []
    (warning,) = service.prompt_warnings("a cat " * 30)
    assert "first 77" in warning


def test_a_pipeline_token_limit_wins_over_the_tokenizer(
    service: GenerationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.pipe, "tokenizer_max_length", 8, raising=False)  # as RAPHAEL's 32-token encoder
    (warning,) = service.prompt_warnings("two cats")
    assert "first 8" in warning


def test_pipeline_defaults_are_read_from_its_signature(service: GenerationService) -> None:
    assert service.call_default("num_inference_steps") == 50
    assert service.call_default("guidance_scale") == 7.5
    assert service.call_default("no_such_argument") is None


def test_a_folder_without_a_pipeline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        GenerationService(tmp_path, device="cpu")


def test_a_pipeline_without_a_training_record_has_no_domain(service: GenerationService) -> None:
    assert service.domain is None and service.domain_examples(4) == []
    assert service.prompt_warnings("a unicorn in pixel art") == []


def test_the_bundled_model_warns_outside_its_trained_domain() -> None:
    bundled = GenerationService(DEFAULT_BUNDLE, device="cpu", torch_threads=1)
    examples = bundled.domain_examples(4)
    assert [seed for _, _, seed in examples] == [0, 1, 2, 3]
    assert all(bundled.prompt_warnings(prompt) == [] for prompt, _, _ in examples)
    (word,) = bundled.prompt_warnings("a cycle on the left on a red background")  # a trained emoji, untrained word
    assert "never saw 'cycle'" in word and "'bicycle'" in word
    result = bundled.run(request(prompt="a unicorn on a red background", steps=1, num_images=1))
    (warning,) = result.warnings
    assert "'unicorn'" in warning


def test_a_tuned_pipeline_shows_the_name_its_training_record_gives(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """``make finetune`` writes ``<run>/pipeline``: the version name comes from training.json, not the folder."""
    tuned = shutil.copytree(tiny_sd_dir, tmp_path / "pipeline")
    (tuned / "training.json").write_text(json.dumps({"name": "tiny-sd-dpo", "data": None}))
    service = GenerationService(tuned, device="cpu", torch_threads=1)
    assert service.model_name == model_name(tuned) == "tiny-sd-dpo"
    assert service.model_version == f"tiny-sd-dpo@{weights_hash(tuned)[:12]}"
    assert service.run(request(steps=1, num_images=1)).provenance["model_name"] == "tiny-sd-dpo"
    (tuned / "training.json").write_text(json.dumps({"steps": 5}))  # a record without a name
    assert model_name(tuned) == "pipeline"
    assert model_name(DEFAULT_BUNDLE) == "raphael-tiny"  # the bundled model keeps its folder's name


def concurrently(service: GenerationService, requests: list[GenerationRequest]) -> list:
    """Run ``requests`` from threads while the model is busy with another request, so that they queue up together
    for the next run (the first request to find the model idle runs alone, at once)."""
    results: list = [None] * len(requests)
    with service.model_lock:  # the model is busy until the block ends
        first = threading.Thread(target=service.run, args=(request(seed=99, num_images=1, steps=2),))
        first.start()
        time.sleep(0.2)  # it leads the current run, waiting for the model
        threads = [
            threading.Thread(target=lambda i=i, r=r: results.__setitem__(i, service.run(r)))
            for i, r in enumerate(requests)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
    for thread in [first, *threads]:
        thread.join(timeout=120)
    return results


def test_requests_that_arrive_together_share_one_run_and_get_their_own_images(service: GenerationService) -> None:
    requests = [
        request(prompt="two cats on a red background", seed=11, num_images=1),
        request(prompt="a rocket on a blue background", seed=40, num_images=2, negative_prompt="blurry"),
        request(prompt="a frog at the top", seed=7, num_images=1),
    ]
    shared = concurrently(service, requests)
    for req, result in zip(requests, shared, strict=True):
        alone = service.run(req)  # the same request with the model to itself
        assert result.seeds == alone.seeds and result.provenance["prompt"] == req.prompt
        assert result.provenance["run_images"] == 4 and alone.provenance["run_images"] == req.num_images
        assert result.run_image_steps == 4 * req.steps and result.seconds == shared[0].seconds
        for mine, own in zip(result.images, alone.images, strict=True):
            assert np.abs(pixels(mine) - pixels(own)).max() <= 2  # batch size changes only the last bits


def test_requests_with_other_settings_do_not_share_a_run(service: GenerationService) -> None:
    requests = [request(seed=1, num_images=1), request(seed=2, num_images=1, steps=4), request(seed=3, cfg=2.0)]
    shared = concurrently(service, requests)
    assert [r.provenance["run_images"] for r in shared] == [1, 1, 2]
    assert [r.provenance["steps"] for r in shared] == [3, 4, 3]


def test_a_run_never_draws_more_than_a_pipeline_call_takes(service: GenerationService) -> None:
    requests = [request(seed=10 * i, num_images=3) for i in range(4)]  # 12 images wanted at once
    shared = concurrently(service, requests)
    assert [r.provenance["run_images"] for r in shared] == [6, 6, 6, 6]  # 3 + 3 fit in 8, a third does not
