"""RaphaelPipeline: text-to-image with RAPHAEL, following the diffusers pipeline conventions."""

import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from model.pipeline.buckets import ASPECT_BUCKETS, bucket_for_size, bucket_size
from model.pipeline.limits import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_INFERENCE_STEPS,
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_STEPS,
)
from model.pipeline.pipeline_output import RaphaelPipelineOutput
from model.pipeline.text_encoder import MAX_LENGTH, encode_text, load_text_encoder
from model.unet.unet_raphael import RaphaelUNet, RoutingRecord

# Bundles saved before model/ was split into wings name their U-Net's module "model.unet_raphael" in
# model_index.json. diffusers resolves that name from sys.modules, so it points at the module's new home.
sys.modules.setdefault("model.unet_raphael", sys.modules[RaphaelUNet.__module__])


def _routing_to_cpu(record: RoutingRecord, keep: slice) -> RoutingRecord:
    """Keep the conditional half of a CFG batch and move tensors to the CPU."""

    def cut(x):
        return None if x is None else x[keep].detach().cpu()

    return RoutingRecord(
        space_experts=[cut(x) for x in record.space_experts],
        time_experts=[cut(x) for x in record.time_experts],
        token_masks=[cut(x) for x in record.token_masks],
        grids=list(record.grids),
        space_counts=None if record.space_counts is None else record.space_counts.cpu(),
        time_counts=None if record.time_counts is None else record.time_counts.cpu(),
    )


def guided_step_count(guidance_end: float, steps: int) -> int:
    """How many of ``steps``, from the first, use CFG when it ends at ``guidance_end`` of them (rounded up)."""
    return math.ceil(round(guidance_end * steps, 6))  # 0.6 x 5 is 3, not 3.0000000000000004 -> 4


class RaphaelPipeline(DiffusionPipeline):
    r"""
    Pipeline for text-to-image generation with RAPHAEL.

    This model inherits from [`DiffusionPipeline`]. It works in pixel space when `vae` is `None`
    (RAPHAEL-tiny) and in latent space with an [`AutoencoderKL`].

    Args:
        unet ([`RaphaelUNet`]): The MoE denoiser.
        scheduler ([`SchedulerMixin`]): Any diffusers scheduler; DDIM by default, DPM-Solver++, Euler and UniPC work.
        vae ([`AutoencoderKL`], *optional*): Decodes latents to images; `None` for a pixel-space model.
        text_encoder ([`PreTrainedModel`], *optional*): Frozen text encoder; the packaged all-MiniLM-L6-v2
            when omitted, so that a saved pipeline need not carry its 90 MB.
        tokenizer ([`PreTrainedTokenizerBase`], *optional*): The text encoder's tokenizer.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae", "text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    _embedded_guidance = False  # set per call by embeds_guidance

    def __init__(
        self,
        unet: RaphaelUNet,
        scheduler: KarrasDiffusionSchedulers,
        vae: AutoencoderKL | None = None,
        text_encoder: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ):
        super().__init__()
        if text_encoder is None or tokenizer is None:
            tokenizer, text_encoder = load_text_encoder()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=True)
        self.tokenizer_max_length = MAX_LENGTH

    @property
    def sample_size(self) -> int:
        """Base side of the square bucket in pixels."""
        return self.unet.config.sample_size * self.vae_scale_factor

    @property
    def aspect_buckets(self) -> dict[str, tuple[int, int]]:
        """Every supported aspect ratio and its ``(height, width)`` in pixels."""
        return {name: bucket_size(name, self.sample_size) for name in ASPECT_BUCKETS}

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Two U-Net rows per image: the scale guides and the model does not take it as an input."""
        return self._guidance_scale > 1.0 and not self._embedded_guidance

    def embeds_guidance(self, guidance_scale: float, negative_prompt: str | list[str] | None) -> bool:
        """Whether one pass with the scale as input replaces CFG's two: a guidance-distilled U-Net, a scale in the
        range it was distilled on, and no negative prompt (it learned CFG against the empty prompt only)."""
        config = self.unet.config
        if not getattr(config, "guidance_embeds", False) or negative_prompt:
            return False
        low, high = config.guidance_range
        return low <= guidance_scale <= high

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def save_pretrained(self, save_directory: str | Path, include_text_encoder: bool = True, **kwargs) -> None:
        """Save in diffusers layout; ``include_text_encoder=False`` leaves out the packaged encoder."""
        if include_text_encoder:
            return super().save_pretrained(save_directory, **kwargs)
        text_encoder, tokenizer = self.text_encoder, self.tokenizer
        self.register_modules(text_encoder=None, tokenizer=None)
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.register_modules(text_encoder=text_encoder, tokenizer=tokenizer)

    def check_inputs(
        self,
        prompt,
        negative_prompt,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        num_images_per_prompt: int,
        callback_on_step_end_tensor_inputs,
        guidance_end: float = 1.0,
    ) -> None:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("`prompt` must be a non-empty string or a list of strings.")
        for p in prompts:
            if not p.strip():
                raise ValueError("The prompt is empty: describe the image you want.")
            if len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"The prompt has {len(p)} characters; the limit is {MAX_PROMPT_CHARS}.")
        if negative_prompt is not None:
            negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            if not isinstance(negatives, list) or len(negatives) != len(prompts):
                raise ValueError("`negative_prompt` must be a string or a list as long as `prompt`.")
            if any(len(n) > MAX_PROMPT_CHARS for n in negatives):
                raise ValueError(f"The negative prompt is longer than {MAX_PROMPT_CHARS} characters.")
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= MAX_STEPS:
            raise ValueError(f"Steps must be a whole number from 1 to {MAX_STEPS}, got {num_inference_steps}.")
        if not isinstance(num_images_per_prompt, int) or not 1 <= num_images_per_prompt <= MAX_IMAGES:
            raise ValueError(f"Images per prompt must be from 1 to {MAX_IMAGES}, got {num_images_per_prompt}.")
        if not 0.0 <= guidance_scale <= MAX_GUIDANCE:
            raise ValueError(f"Guidance scale must be between 0 and {MAX_GUIDANCE:g}, got {guidance_scale}.")
        if not 0.0 <= guidance_end <= 1.0:
            raise ValueError(f"Guidance end must be a fraction of the steps from 0 to 1, got {guidance_end}.")
        if bucket_for_size(height, width, self.sample_size) is None:
            sizes = ", ".join(f"{n} = {w}x{h}" for n, (h, w) in self.aspect_buckets.items())
            raise ValueError(f"Size {width}x{height} is not an aspect bucket of this model; choose one of: {sizes}.")
        if callback_on_step_end_tensor_inputs is not None and not all(
            k in self._callback_tensor_inputs for k in callback_on_step_end_tensor_inputs
        ):
            allowed = self._callback_tensor_inputs
            raise ValueError(f"`callback_on_step_end_tensor_inputs` must be a subset of {allowed}.")

    def encode_prompt(
        self,
        prompt: list[str],
        negative_prompt: list[str] | None,
        num_images_per_prompt: int,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Per-token states (B*n, L, D) and masks for the prompt and, with CFG, the negative prompt."""

        def encode(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            states, mask = encode_text(self.tokenizer, self.text_encoder, texts, device, self.tokenizer_max_length)
            return (
                states.to(self.unet.dtype).repeat_interleave(num_images_per_prompt, dim=0),
                mask.repeat_interleave(num_images_per_prompt, dim=0),
            )

        prompt_embeds, prompt_mask = encode(prompt)
        negative_embeds = negative_mask = None
        if self.do_classifier_free_guidance:
            negative_embeds, negative_mask = encode(negative_prompt or [""] * len(prompt))
        return prompt_embeds, prompt_mask, negative_embeds, negative_mask

    def prepare_latents(self, batch_size, height, width, dtype, device, generator, latents=None) -> torch.Tensor:
        shape = (
            batch_size,
            self.unet.config.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"Got {len(generator)} generators for a batch of {batch_size} images.")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif latents.shape != shape:
            raise ValueError(f"`latents` has shape {tuple(latents.shape)}, expected {shape}.")
        return latents.to(device) * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        guidance_end: float = 1.0,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        return_routing: bool = False,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers signature)
    ) -> RaphaelPipelineOutput | tuple:
        r"""
        Generate images from text.

        Args:
            prompt (`str` or `list[str]`): What to draw, up to 1,000 characters.
            negative_prompt (`str` or `list[str]`, *optional*): What to steer away from (used with CFG).
            height (`int`, *optional*), width (`int`, *optional*): One of `aspect_buckets`; square by default.
            num_inference_steps (`int`, defaults to 25): 1-150; more steps give finer detail.
            guidance_scale (`float`, defaults to 2.0): Classifier-free guidance; RAPHAEL-tiny scores best near 2.0
                on validation prompts (its model card has the sweep). A guidance-distilled U-Net (``guidance_embeds``)
                takes it as an input inside its distilled range: one U-Net row per image instead of two.
            guidance_end (`float`, defaults to 1.0): The fraction of the steps, from the first, that use CFG; the
                later steps run the prompt alone, at half the U-Net batch. 1.0 guides every step.
            num_images_per_prompt (`int`, defaults to 1): 1-8.
            eta (`float`, defaults to 0.0): DDIM eta; ignored by other schedulers.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Makes generation
                deterministic; one generator per image makes each image reproducible alone.
            latents (`torch.Tensor`, *optional*): Pre-drawn initial noise.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` or `"latent"`.
            return_dict (`bool`, defaults to `True`): Return a [`RaphaelPipelineOutput`] instead of a tuple.
            return_routing (`bool`, defaults to `False`): Record the experts and token regions of every step.
            callback_on_step_end (`Callable`, *optional*): Called as `callback_on_step_end(self, step, timestep,
                callback_kwargs)` after each step; may return replaced tensors. Set `self._interrupt = True` to stop.
            callback_on_step_end_tensor_inputs (`list[str]`): Tensors handed to the callback.

        Returns:
            [`RaphaelPipelineOutput`] or `tuple`: the images, and the routing record when asked for.
        """
        # 0. default size: the square bucket
        height = height or self.sample_size
        width = width or self.sample_size

        # 1. check inputs
        self.check_inputs(
            prompt,
            negative_prompt,
            height,
            width,
            num_inference_steps,
            guidance_scale,
            num_images_per_prompt,
            callback_on_step_end_tensor_inputs,
            guidance_end,
        )
        self._guidance_scale = guidance_scale
        self._embedded_guidance = self.embeds_guidance(guidance_scale, negative_prompt)
        self._interrupt = False
        prompts = [prompt] if isinstance(prompt, str) else prompt
        negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
        device = self._execution_device
        batch_size = len(prompts) * num_images_per_prompt

        # 2. encode the prompt
        prompt_embeds, prompt_mask, negative_prompt_embeds, negative_mask = self.encode_prompt(
            prompts, negatives, num_images_per_prompt, device
        )
        if self.do_classifier_free_guidance:
            text = torch.cat([negative_prompt_embeds, prompt_embeds])  # (2B, L, D)
            text_mask = torch.cat([negative_mask, prompt_mask])  # (2B, L)
        else:
            text, text_mask = prompt_embeds, prompt_mask

        # 3. timesteps and initial noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        guides = self.do_classifier_free_guidance or self._embedded_guidance
        guided_steps = guided_step_count(guidance_end, len(timesteps)) if guides else 0
        latents = self.prepare_latents(batch_size, height, width, prompt_embeds.dtype, device, generator, latents)
        extra_step_kwargs = {}
        step_parameters = inspect.signature(self.scheduler.step).parameters
        if "eta" in step_parameters:
            extra_step_kwargs["eta"] = eta
        if "generator" in step_parameters:
            extra_step_kwargs["generator"] = generator

        # 4. denoising loop
        routing: list[RoutingRecord] = []
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                guided = i < guided_steps  # CFG on this step; after guidance_end the prompt runs alone
                two_pass = guided and not self._embedded_guidance
                latent_model_input = torch.cat([latents] * 2) if two_pass else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                out = self.unet(
                    latent_model_input,
                    t.expand(latent_model_input.shape[0]),
                    text if two_pass else prompt_embeds,
                    text_mask if two_pass else prompt_mask,
                    guidance=guidance_scale if guided and self._embedded_guidance else None,
                    return_routing=return_routing,
                )
                noise_pred = out.sample  # (2B or B, C, h, w)
                if two_pass:
                    noise_uncond, noise_text = noise_pred.chunk(2)
                    noise_pred = noise_uncond + guidance_scale * (noise_text - noise_uncond)
                if return_routing:
                    keep = slice(batch_size, None) if two_pass else slice(None)
                    routing.append(_routing_to_cpu(out.routing, keep))
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    callback_kwargs = {}
                    for k in callback_on_step_end_tensor_inputs:
                        callback_kwargs[k] = locals()[k]
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                progress_bar.update()

        # 5. decode
        if output_type == "latent":
            image = latents
        else:
            if self.vae is not None:
                image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
            else:
                image = latents
            image = self.image_processor.postprocess(image.float(), output_type=output_type)
        self.maybe_free_model_hooks()

        if not return_dict:
            return (image, routing) if return_routing else (image,)
        return RaphaelPipelineOutput(images=image, routing=routing if return_routing else None)
