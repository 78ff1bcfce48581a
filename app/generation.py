"""GenerationService: the only place in the app that touches torch.

It loads the bundled RAPHAEL checkpoint or any other local diffusers pipeline folder, swaps
samplers, seeds every image with its own generator (image ``i`` of a batch with seed ``s`` is
exactly what seed ``s + i`` gives alone), reports progress per step, draws the requests that arrive
while the model runs together in its next run (one model run at a time per server), and writes the
full provenance of each image: what the feedback store keeps and what the PNG text chunk carries, so
any rated image can be regenerated.
"""

from __future__ import annotations

import inspect
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from app.categories import PromptCategorizer
from app.reranker import NO_REWARD_MODEL, Reranker
from app.settings import APP_VERSION, Settings
from feedback.batches import Batches
from feedback.images import model_version
from model.pipeline.buckets import ASPECT_BUCKETS, DEFAULT_BUCKET, bucket_size
from model.pipeline.identity import model_name, weights_hash
from model.pipeline.limits import MAX_IMAGES, MAX_SEED
from model.pipeline.samplers import DEFAULT_SAMPLER, SAMPLERS, build_sampler
from model.pipeline.sampling_defaults import sampling_defaults
from model.prompts.chinese import in_english
from model.prompts.prompt_reader import read_prompt
from model.prompts.trained_domain import TrainedDomain

log = logging.getLogger(__name__)


ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class GenerationRequest:
    """Validated inputs of one generation (see ``app.guard``)."""

    prompt: str
    negative_prompt: str = ""
    enhanced_prompt: str | None = None  # when set, the model sees this instead of ``prompt``
    steps: int = Settings.default_steps
    cfg: float = Settings.default_cfg
    seed: int | None = None  # None: draw one at random and report it
    num_images: int = Settings.default_images
    aspect: str = DEFAULT_BUCKET
    sampler: str = DEFAULT_SAMPLER
    best_of: int = 1  # candidates drawn per shown image; the reward model picks (app.reranker)

    @property
    def candidates(self) -> int:
        """Images the model draws: ``num_images`` of them are shown."""
        return self.num_images * self.best_of

    @property
    def model_prompt(self) -> str:
        """What the model reads: the enhanced prompt, else the prompt, a Chinese one translated into the captions'
        English (the MiniLM text encoder reads English only)."""
        return in_english(self.enhanced_prompt or self.prompt)


@dataclass(frozen=True)
class GenerationResult:
    """Images in batch order, the per-image seeds and the provenance shared by the batch; ``seconds`` and
    ``run_image_steps`` are those of the model run the request shared with others (steps × all its images)."""

    images: list[Image.Image]
    seeds: list[int]
    provenance: dict[str, Any]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    run_image_steps: int = 0


@dataclass(frozen=True, eq=False)
class SharedRun:
    """A request waiting to be drawn, with its first seed and its progress callback."""

    request: GenerationRequest
    seed: int
    progress: ProgressCallback | None

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.request.candidates)]

    @property
    def key(self) -> tuple[Any, ...]:
        """Requests that may share one model run: one image size, step count, guidance and sampler (prompts,
        negative prompts and seeds are per image)."""
        r = self.request
        return (r.aspect, r.steps, r.cfg, r.sampler)


def load_pipeline(model_dir: Path, device: torch.device, dtype: torch.dtype) -> DiffusionPipeline:
    """Load a local pipeline folder: RaphaelPipeline by its model_index.json class name, else any diffusers one."""
    index_file = model_dir / "model_index.json"
    if not index_file.exists():
        raise FileNotFoundError(f"{model_dir} is not a diffusers pipeline folder (no model_index.json).")
    class_name = json.loads(index_file.read_text())["_class_name"]
    if class_name == "RaphaelPipeline":
        from model.pipeline.pipeline_raphael import RaphaelPipeline

        pipe = RaphaelPipeline.from_pretrained(model_dir, dtype=dtype)
    else:
        pipe = DiffusionPipeline.from_pretrained(model_dir, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


class GenerationService:
    """Runs one pipeline, one request at a time, and describes every image it makes."""

    def __init__(
        self,
        model_dir: Path,
        device: str | None = None,
        torch_threads: int | None = None,
        categorizer: PromptCategorizer | None = None,
        app_version: str = APP_VERSION,
        reranker: Reranker | None = None,
        model_lock: threading.Lock | None = None,
    ) -> None:
        """``model_lock``: shared by the services of one server, so that one model runs at a time."""
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.model_dir = Path(model_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # fp16 weights are loaded as fp32 on CPU, where half precision is slow or unsupported.
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        started = time.perf_counter()
        self.pipe = load_pipeline(self.model_dir, self.device, self.dtype)
        self.model_name = model_name(self.model_dir)
        self.model_hash = weights_hash(self.model_dir)
        self.model_class = type(self.pipe).__name__
        self.sample_size = self._pixel_sample_size()
        self.domain = TrainedDomain.from_bundle(self.model_dir)  # None for pipelines we did not train
        self.sampling = sampling_defaults(self.model_dir)  # the folder's measured defaults, or {}
        # The folder's guidance end applies to every image, where the pipeline takes one (RaphaelPipeline does).
        takes = "guidance_end" in inspect.signature(self.pipe.__call__).parameters
        self._call_extras = (
            {"guidance_end": self.sampling["guidance_end"]} if takes and "guidance_end" in self.sampling else {}
        )
        self.categorizer = categorizer or PromptCategorizer()
        self.app_version = app_version
        self.reranker = reranker  # None: best_of must be 1
        self._scheduler_config = self.pipe.scheduler.config
        self._schedulers = {name: build_sampler(name, self._scheduler_config) for name in SAMPLERS}
        self.model_lock = model_lock or threading.Lock()
        self._runs: Batches[SharedRun, GenerationResult] = Batches(
            self._run_shared, MAX_IMAGES, key=lambda run: run.key, size=lambda run: run.request.candidates
        )
        log.info(
            "Loaded %s (%s, weights %s) on %s in %.1f s; native size %d px",
            self.model_name,
            self.model_class,
            self.model_hash[:12],
            self.device,
            time.perf_counter() - started,
            self.sample_size,
        )

    @property
    def model_version(self) -> str:
        """Name and short weights hash: what the dashboard compares."""
        return model_version(self.model_name, self.model_hash)

    @property
    def samplers(self) -> tuple[str, ...]:
        return tuple(SAMPLERS)

    @property
    def aspects(self) -> tuple[str, ...]:
        return tuple(ASPECT_BUCKETS)

    def _pixel_sample_size(self) -> int:
        """Side of the square image the model was trained on, in pixels: latent size times the VAE factor.

        RaphaelPipeline sets ``vae_scale_factor`` to 1 when it works in pixel space.
        """
        sample = self.pipe.unet.config.sample_size
        sample = sample[0] if isinstance(sample, list | tuple) else int(sample)
        return sample * int(getattr(self.pipe, "vae_scale_factor", 1))

    @property
    def default_sampler(self) -> str:
        """The sampler the folder recommends (``training.json`` ``sampling``), else the menu's default."""
        return self.sampling.get("sampler", DEFAULT_SAMPLER)

    def call_default(self, name: str) -> Any:
        """The default of a ``__call__`` argument: the folder's recommended one (``training.json`` ``sampling``),
        else the pipeline's own (RAPHAEL-tiny: CFG 2, 25 steps), or None."""
        if name in self.sampling:
            return self.sampling[name]
        parameter = inspect.signature(self.pipe.__call__).parameters.get(name)
        return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default

    def size_for(self, aspect: str) -> tuple[int, int]:
        """``(height, width)`` in pixels of an aspect bucket for this model."""
        return bucket_size(aspect, self.sample_size)

    def domain_examples(self, n: int) -> list[list[Any]]:
        """``[prompt, negative prompt, seed]`` rows of held-out prompts from the trained domain, or none.

        Examples should show what the model can do, so they come from where it was trained.
        """
        if self.domain is None:
            return []
        return [[prompt, "", seed] for seed, prompt in enumerate(self.domain.example_prompts(n))]

    def category(self, prompt: str) -> str:
        return self.categorizer.category(prompt)

    def prompt_warnings(self, text: str) -> list[str]:
        """What a rater should know before judging ``text`` as typed: words or a language the model cannot read,
        no emoji it draws, parts outside the trained domain, untrained words, truncation.

        A poor picture of what the model never learned should not be taken for its best, and pipelines
        cut long prompts silently. The domain comes from the bundle's ``training.json`` (without one, only
        the language and the emoji are checked); the token limit is the pipeline's ``tokenizer_max_length``
        (the diffusers name, e.g. Flux) when it sets one, else the tokenizer's ``model_max_length``.
        """
        draws_emoji = self.domain is not None or self.model_class == "RaphaelPipeline"
        read = read_prompt(text, self.domain, draws_emoji=draws_emoji)
        warnings = list(read.warnings)
        tokenizer = getattr(self.pipe, "tokenizer", None)
        limit = getattr(self.pipe, "tokenizer_max_length", None) or getattr(tokenizer, "model_max_length", None)
        if tokenizer is None or not isinstance(limit, int) or limit > 100_000:
            return warnings
        n_tokens = len(tokenizer(read.text_for_model, truncation=False).input_ids)
        if n_tokens > limit:
            warnings.append(f"The prompt is {n_tokens} tokens long; the text encoder reads only the first {limit}.")
        return warnings

    def run(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        """Generate ``request.num_images`` images (the best of ``request.candidates`` when ``best_of`` > 1); raises
        ValueError with a user-facing message on bad input.

        Requests that arrive while the model runs and share its settings (``SharedRun.key``) are drawn together in
        the next run, up to ``MAX_IMAGES`` images (:mod:`feedback.batches`): each image still has its own seed and
        generator, so it is the image its seed gives alone, and each request gets its own images back.
        """
        if request.best_of > 1 and self.reranker is None:
            raise ValueError(NO_REWARD_MODEL)
        n = request.candidates
        # Drawn so that the seed of every candidate (seed + i) is one a rater can type back in.
        seed = secrets.randbelow(MAX_SEED - n + 2) if request.seed is None else request.seed
        return self._runs.submit(SharedRun(request, seed, progress))

    def _run_shared(self, runs: list[SharedRun]) -> list[GenerationResult]:
        """One model run for requests of one key: their images in pipeline calls of at most ``MAX_IMAGES``, then
        each request's own images (reranked when it asked for best-of-n)."""
        first = runs[0].request
        height, width = self.size_for(first.aspect)
        draws = [(run.request, image_seed) for run in runs for image_seed in run.seeds]
        chunks = [draws[i : i + MAX_IMAGES] for i in range(0, len(draws), MAX_IMAGES)]  # images per pipeline call
        images: list[Image.Image] = []

        def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            for run in runs:
                if run.progress is not None:
                    run.progress(done_steps + step + 1, first.steps * len(chunks))
            return callback_kwargs

        with self.model_lock:
            self.pipe.scheduler = self._schedulers[first.sampler]
            started = time.perf_counter()
            for index, chunk in enumerate(chunks):
                done_steps = index * first.steps
                negatives = [request.negative_prompt for request, _ in chunk]
                output = self.pipe(
                    prompt=[request.model_prompt for request, _ in chunk],
                    negative_prompt=negatives if any(negatives) else None,
                    height=height,
                    width=width,
                    num_inference_steps=first.steps,
                    guidance_scale=first.cfg,
                    **self._call_extras,
                    # One CPU generator per image: the same seed gives the same image on any device and in any batch.
                    generator=[torch.Generator("cpu").manual_seed(image_seed) for _, image_seed in chunk],
                    output_type="pil",
                    callback_on_step_end=on_step_end,
                )
                images += output.images
            results = []
            for run in runs:
                own, images = images[: len(run.seeds)], images[len(run.seeds) :]
                results.append(self._result(run, own, height, width, len(draws)))
            seconds = time.perf_counter() - started
        log.info(
            "Generated %d image(s) of %dx%d for %d request(s) in %.2f s", len(draws), width, height, len(runs), seconds
        )
        return [replace(result, seconds=seconds, run_image_steps=first.steps * len(draws)) for result in results]

    def _result(
        self, run: SharedRun, images: list[Image.Image], height: int, width: int, run_images: int
    ) -> GenerationResult:
        """A request's images from a shared run (the reward model's top ones for best-of-n) and their provenance."""
        request, seeds = run.request, run.seeds
        picked: dict[str, Any] = {}
        if request.best_of > 1:
            order, scores = self.reranker.rank(images, request.model_prompt)
            shown = order[: request.num_images]
            images, seeds = [images[i] for i in shown], [seeds[i] for i in shown]
            picked = {
                "best_of": request.best_of,
                "reward_model": self.reranker.version,
                "reward_scores": [round(scores[i], 4) for i in shown],
            }
        provenance = self.provenance(request, run.seed, seeds, height, width)
        return GenerationResult(
            images=images,
            seeds=seeds,
            provenance={**provenance, **picked, "run_images": run_images},
            seconds=0.0,  # the shared run's time, set when it is over
            warnings=self.prompt_warnings(request.enhanced_prompt or request.prompt),  # as typed: names what is lost
        )

    def provenance(
        self, request: GenerationRequest, seed: int, seeds: list[int], height: int, width: int
    ) -> dict[str, Any]:
        """Everything needed to regenerate the batch; the keys the feedback store expects, plus extras."""
        scheduler = self._schedulers[request.sampler]
        return {
            "prompt": request.prompt,
            "enhanced_prompt": request.enhanced_prompt,
            "model_prompt": request.model_prompt,  # what the model read: a Chinese prompt's translation
            "negative_prompt": request.negative_prompt,
            "seed": seed,
            "seeds": seeds,
            "steps": request.steps,
            "cfg": request.cfg,
            **self._call_extras,  # guidance_end, when the version guides only its first steps
            "sampler": request.sampler,
            "scheduler": type(scheduler).__name__,
            "scheduler_config": dict(scheduler.config),
            "width": width,
            "height": height,
            "aspect": request.aspect,
            "num_images": request.num_images,
            "model_name": self.model_name,
            "model_hash": self.model_hash,
            "model_class": self.model_class,
            "app_version": self.app_version,
            "category": self.category(request.model_prompt),  # read from English, a translation included
            "diffusers_version": diffusers.__version__,
            "torch_version": torch.__version__,
            "device": self.device.type,
        }
