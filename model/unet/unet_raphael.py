"""RaphaelUNet: a U-Net whose attention blocks are RAPHAEL transformer blocks."""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .blocks import BlockRecord, Downsample, ResBlock, SpatialTransformer, Upsample
from .edge import EdgeHead
from .embeddings import TimestepEmbedder
from .moe import DispatchChoice, check_dispatch

# CFG scales (about 1-4) are spread over the sinusoid's periods like timesteps (0-999), as FLUX's guidance input is.
GUIDANCE_EMBED_SCALE = 1000.0


@dataclass
class RoutingRecord:
    """Per-block routing of one forward pass, for losses, usage reports and visualisation.

    Lists run over the transformer blocks in forward order; dense blocks hold ``None``.
    """

    space_experts: list[torch.Tensor | None] = field(default_factory=list)  # (B, L) expert per text token
    time_experts: list[torch.Tensor | None] = field(default_factory=list)  # (B,) expert per sample
    token_masks: list[torch.Tensor | None] = field(default_factory=list)  # (B, N, L) binary regions
    grids: list[tuple[int, int]] = field(default_factory=list)  # (h, w) token grid of each block
    space_counts: torch.Tensor | None = None  # (blocks, E_space) tokens routed per expert
    time_counts: torch.Tensor | None = None  # (blocks, E_time) samples routed per expert
    space_balance_loss: torch.Tensor | None = None
    time_balance_loss: torch.Tensor | None = None
    edge_logits: torch.Tensor | None = None  # (B, 1, H, W)

    @property
    def aux_loss(self) -> torch.Tensor:
        """Sum of the balance losses (zero for a dense model)."""
        losses = [x for x in (self.space_balance_loss, self.time_balance_loss) if x is not None]
        return torch.stack(losses).sum() if losses else torch.zeros(())


@dataclass
class RaphaelUNetOutput(BaseOutput):
    """Output of :class:`RaphaelUNet`.

    Args:
        sample (`torch.Tensor` of shape `(batch_size, out_channels, height, width)`):
            The model prediction (noise, or velocity for v-prediction).
        routing (`RoutingRecord`, *optional*):
            Experts per token and per sample, token masks, edge logits and aux losses.
    """

    sample: torch.Tensor
    routing: RoutingRecord | None = None


class RaphaelUNet(ModelMixin, ConfigMixin):
    r"""
    The RAPHAEL denoiser: conv ResBlocks and RAPHAEL transformer blocks in a U-Net.

    Each transformer block runs self-attention, cross-attention to the text, a Time-MoE routed by
    the timestep embedding and a Space-MoE routed per text token over its attention region.

    How the MoE layers run their experts is a runtime choice, like an attention processor, set with
    :meth:`set_moe_dispatch` and not saved with the weights; both give the same outputs and gradients.
    ``"grouped"`` (the default) runs each expert only on the positions routed to it: the least work, best on a
    CPU and at batch 1, but it reads the routing on the host once per layer. ``"dense"`` has fixed shapes and no
    host sync: use it on a GPU, for large batches, CUDA graphs and ``torch.compile``; its Space-MoE runs every
    expert on every position.

    Parameters:
        sample_size (`int`, defaults to 32): Base side of the square bucket in pixels (or latents).
        in_channels (`int`, defaults to 3): Channels of the input sample.
        out_channels (`int`, defaults to 3): Channels of the prediction.
        block_out_channels (`tuple[int]`, defaults to `(32, 64, 192)`): Channels per resolution level.
        layers_per_block (`int`, defaults to 1): ResBlocks per level on the way down (and up).
        transformer_layers_per_level (`tuple[int]`, defaults to `(0, 0, 2)`):
            Transformer blocks after each ResBlock of a level; 0 keeps the level convolutional.
        mid_transformer_layers (`int`, defaults to 2): Transformer blocks in the middle.
        attention_head_dim (`int`, defaults to 32): Channels per attention head.
        cross_attention_dim (`int`, defaults to 384): Width of the text encoder states.
        num_space_experts (`int`, defaults to 6): Space-MoE experts; 0 gives a dense FFN.
        num_time_experts (`int`, defaults to 4): Time-MoE experts; 0 gives a dense FFN.
        ffn_mult (`float`, defaults to 2.0): Expert hidden width as a multiple of the block width.
        gate_hidden_dim (`int`, defaults to 64): Hidden width of each gate FFN.
        mask_threshold (`float`, defaults to 0.2): Region threshold relative to a token's peak attention.
        router_jitter (`float`, defaults to 0.1): Std of the logit noise added in training.
        norm_num_groups (`int`, defaults to 8): Groups of every GroupNorm.
        edge_block_index (`int`, defaults to 0): Transformer block whose cross-attention map feeds the edge head.
        edge_token_index (`int`, defaults to 0): Text token whose map is used (0 = the encoder's [CLS]).
        edge_channels (`int`, defaults to 16): Channels of the edge head.
        guidance_embeds (`bool`, defaults to False): Take the CFG scale as an input (guidance distillation), so one
            pass per step draws what two passes of classifier-free guidance drew.
        guidance_range (`tuple[float, float]`, defaults to `(1.0, 4.0)`): The scales an embedding model was distilled
            on; the pipeline runs two-pass CFG outside it.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 3,
        out_channels: int = 3,
        block_out_channels: tuple[int, ...] = (32, 64, 192),
        layers_per_block: int = 1,
        transformer_layers_per_level: tuple[int, ...] = (0, 0, 2),
        mid_transformer_layers: int = 2,
        attention_head_dim: int = 32,
        cross_attention_dim: int = 384,
        num_space_experts: int = 6,
        num_time_experts: int = 4,
        ffn_mult: float = 2.0,
        gate_hidden_dim: int = 64,
        mask_threshold: float = 0.2,
        router_jitter: float = 0.1,
        norm_num_groups: int = 8,
        edge_block_index: int = 0,
        edge_token_index: int = 0,
        edge_channels: int = 16,
        guidance_embeds: bool = False,
        guidance_range: tuple[float, float] = (1.0, 4.0),
    ):
        super().__init__()
        if len(transformer_layers_per_level) != len(block_out_channels):
            raise ValueError(
                f"transformer_layers_per_level has {len(transformer_layers_per_level)} entries but there are "
                f"{len(block_out_channels)} levels in block_out_channels."
            )
        if any(c % attention_head_dim for c, t in zip(block_out_channels, transformer_layers_per_level) if t):
            raise ValueError(f"Every transformer level width must be divisible by {attention_head_dim}.")
        if not 0.0 < mask_threshold <= 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1], got {mask_threshold}.")
        if not 0.0 <= guidance_range[0] <= guidance_range[1]:
            raise ValueError(f"guidance_range must be (low, high) with 0 <= low <= high, got {guidance_range}.")

        # 1. input and timestep
        temb_dim = block_out_channels[0] * 4
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        self.time_embedder = TimestepEmbedder(temb_dim)
        # The scale joins the ResBlocks' conditioning only: Time-MoE keeps routing on the timestep alone. Its output
        # starts at zero, so a model distilled from a teacher starts as the teacher's prompt-only prediction.
        self.guidance_embedder = TimestepEmbedder(temb_dim) if guidance_embeds else None
        if self.guidance_embedder is not None:
            nn.init.zeros_(self.guidance_embedder.mlp[-1].weight)
            nn.init.zeros_(self.guidance_embedder.mlp[-1].bias)

        def transformer(channels: int, depth: int) -> SpatialTransformer:
            return SpatialTransformer(
                channels,
                depth,
                norm_num_groups,
                heads=channels // attention_head_dim,
                text_dim=cross_attention_dim,
                temb_dim=temb_dim,
                num_space_experts=num_space_experts,
                num_time_experts=num_time_experts,
                ffn_dim=int(channels * ffn_mult),
                gate_hidden_dim=gate_hidden_dim,
                mask_threshold=mask_threshold,
                router_jitter=router_jitter,
            )

        # 2. down path: ResBlocks (+ transformers) per level, downsampling between levels
        self.down_levels = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        prev = block_out_channels[0]
        for i, (ch, depth) in enumerate(zip(block_out_channels, transformer_layers_per_level)):
            layers = nn.ModuleList()
            for _ in range(layers_per_block):
                layers.append(ResBlock(prev, ch, temb_dim, norm_num_groups))
                layers.append(transformer(ch, depth) if depth else nn.Identity())
                prev = ch
            self.down_levels.append(layers)
            is_last = i == len(block_out_channels) - 1
            self.downsamplers.append(nn.Identity() if is_last else Downsample(ch, ch))

        # 3. middle
        mid_ch = block_out_channels[-1]
        self.mid_res1 = ResBlock(mid_ch, mid_ch, temb_dim, norm_num_groups)
        self.mid_transformer = transformer(mid_ch, mid_transformer_layers) if mid_transformer_layers else None
        self.mid_res2 = ResBlock(mid_ch, mid_ch, temb_dim, norm_num_groups)

        # 4. up path: concatenate the level's skip, ResBlocks (+ transformers), then upsample
        self.up_levels = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for i in reversed(range(len(block_out_channels))):
            ch, depth = block_out_channels[i], transformer_layers_per_level[i]
            layers = nn.ModuleList()
            for j in range(layers_per_block):
                layers.append(ResBlock(2 * ch if j == 0 else ch, ch, temb_dim, norm_num_groups))
                layers.append(transformer(ch, depth) if depth else nn.Identity())
            self.up_levels.append(layers)
            self.upsamplers.append(Upsample(ch, block_out_channels[i - 1]) if i > 0 else nn.Identity())

        # 5. output and edge head (training only)
        self.norm_out = nn.GroupNorm(norm_num_groups, block_out_channels[0])
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)
        self.edge_head = EdgeHead(edge_channels)

    def set_moe_dispatch(self, mode: str) -> None:
        """Run every Space-/Time-MoE layer with the dispatch ``mode``, one of ``MOE_DISPATCH``.

        Example: ``unet.set_moe_dispatch("dense")`` before capturing a CUDA graph or calling ``torch.compile``.
        """
        check_dispatch(mode)  # also on a dense model, which has no MoE layer to refuse it
        for module in self.modules():
            if isinstance(module, DispatchChoice):
                module.set_dispatch(mode)

    @property
    def num_transformer_blocks(self) -> int:
        return sum(len(m.blocks) for m in self.modules() if isinstance(m, SpatialTransformer))

    def _run_level(self, layers, h, cond, temb, text, text_mask, need_maps, records: list[BlockRecord]):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, cond)
            elif isinstance(layer, SpatialTransformer):
                h, recs = layer(h, temb, text, text_mask, need_maps)
                records.extend(recs)
        return h

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | float | None = None,
        return_routing: bool = False,
        compute_edges: bool = False,
        return_dict: bool = True,
    ) -> RaphaelUNetOutput | tuple:
        """
        Args:
            sample (`torch.Tensor`): Noisy input (B, C, H, W); H and W divisible by 2^(levels-1).
            timestep: Diffusion step per sample (B,) or one for all.
            encoder_hidden_states (`torch.Tensor`): Text encoder states (B, L, D).
            encoder_attention_mask (`torch.Tensor`, *optional*): (B, L), 1 for real tokens, 0 for pads.
            guidance (`torch.Tensor` or `float`, *optional*): CFG scale per sample (B,) or one for all, for a model
                with ``guidance_embeds``; None is 1.0, the prompt alone. Ignored by other models.
            return_routing (`bool`): Also return the :class:`RoutingRecord`.
            compute_edges (`bool`): Run the edge head (training); implies a routing record.
        """
        b, _, height, width = sample.shape
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        if height % factor or width % factor:
            raise ValueError(f"Sample height and width must be divisible by {factor}, got {height}x{width}.")
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], device=sample.device)
        timestep = timestep.to(sample.device).reshape(-1).expand(b)  # (B,)
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(encoder_hidden_states.shape[:2], device=sample.device)
        text_mask = encoder_attention_mask.bool()  # (B, L)
        need_maps = return_routing or compute_edges

        # 1. embed
        temb = self.time_embedder(timestep)  # (B, T)
        cond = temb  # (B, T) what the ResBlocks read
        if self.guidance_embedder is not None:
            scale = torch.as_tensor(1.0 if guidance is None else guidance, device=sample.device)
            cond = temb + self.guidance_embedder(scale.reshape(-1).expand(b) * GUIDANCE_EMBED_SCALE)
        h = self.conv_in(sample)  # (B, C0, H, W)

        # 2. down
        records: list[BlockRecord] = []
        skips = []
        for layers, down in zip(self.down_levels, self.downsamplers):
            h = self._run_level(layers, h, cond, temb, encoder_hidden_states, text_mask, need_maps, records)
            skips.append(h)
            h = down(h)

        # 3. mid
        h = self.mid_res1(h, cond)
        if self.mid_transformer is not None:
            h, recs = self.mid_transformer(h, temb, encoder_hidden_states, text_mask, need_maps)
            records.extend(recs)
        h = self.mid_res2(h, cond)

        # 4. up
        for layers, up in zip(self.up_levels, self.upsamplers):
            skip = skips.pop()
            h = self._run_level(
                layers, torch.cat([h, skip], dim=1), cond, temb, encoder_hidden_states, text_mask, need_maps, records
            )
            if skips:
                h = up(h, skips[-1].shape[-2:])

        # 5. out
        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, C_out, H, W)

        routing = self._routing_record(records, (height, width), compute_edges) if need_maps else None
        if not return_dict:
            return (out, routing) if routing is not None else (out,)
        return RaphaelUNetOutput(sample=out, routing=routing)

    def _routing_record(self, records: list[BlockRecord], size: tuple[int, int], compute_edges: bool) -> RoutingRecord:
        routing = RoutingRecord()
        space_counts, time_counts, space_losses, time_losses = [], [], [], []
        for rec in records:
            routing.grids.append(rec.grid)
            routing.space_experts.append(rec.space.router.expert_index if rec.space else None)
            routing.token_masks.append(rec.space.token_masks if rec.space else None)
            routing.time_experts.append(rec.time.router.expert_index if rec.time else None)
            if rec.space:
                space_counts.append(rec.space.expert_counts)
                space_losses.append(rec.space.balance_loss)
            if rec.time:
                time_counts.append(rec.time.expert_counts)
                time_losses.append(rec.time.balance_loss)
        if space_counts:
            routing.space_counts = torch.stack(space_counts)
            routing.space_balance_loss = torch.stack(space_losses).mean()
        if time_counts:
            routing.time_counts = torch.stack(time_counts)
            routing.time_balance_loss = torch.stack(time_losses).mean()
        if compute_edges and records:
            rec = records[self.config.edge_block_index]
            gh, gw = rec.grid
            token_map = rec.attn_map[:, :, self.config.edge_token_index]  # (B, N)
            token_map = token_map.reshape(-1, 1, gh, gw)  # (B, 1, h, w)
            routing.edge_logits = self.edge_head(token_map.to(self.conv_out.weight.dtype), size)
        return routing
