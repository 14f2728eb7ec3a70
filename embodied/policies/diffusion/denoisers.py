"""Noise-prediction networks for Diffusion Policy (Chi et al. 2023): given a noisy action sequence, the diffusion
step and the observation features, predict the noise (or the clean sequence).

``unet``: the paper's CNN variant, a 1-D temporal U-Net over the action sequence whose residual blocks are
FiLM-conditioned (per-channel scale and bias) on the diffusion-step embedding concatenated with the observation
features; three levels by default (``down_dims`` 512-1024-2048), kernel 5, GroupNorm with 8 groups, Mish.

``transformer``: the paper's time-series diffusion transformer: action tokens attend causally to each other and,
through cross-attention, to a condition sequence made of the diffusion-step token and one token per observed step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalStepEmbedding(nn.Module):
    """Diffusion step t -> (B, dim) sinusoids at geometrically spaced frequencies (as in DDPM)."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"the diffusion-step embedding size must be even, got {dim}")
        half = dim // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        angles = timesteps.float()[:, None] * self.frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def step_encoder(dim: int, hidden_factor: int = 4) -> nn.Sequential:
    """Sinusoids -> MLP (dim -> 4 dim -> dim, Mish), the paper's diffusion-step encoder."""
    return nn.Sequential(
        SinusoidalStepEmbedding(dim),
        nn.Linear(dim, dim * hidden_factor),
        nn.Mish(),
        nn.Linear(dim * hidden_factor, dim),
    )


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters, same result) computed on the CPU as one matrix product over the unfolded
    windows. PyTorch's CPU conv1d (im2col per sample, then GEMM) is ~1.6-2x slower for these short sequences and
    wide channels at batch >= 8 and for the paper's widest layers at any batch; for a single sequence through a
    narrow layer the library is faster (the unfolding's extra ops dominate), and other devices keep it too."""

    MATMUL_MIN_BATCH = 4
    MATMUL_MIN_WEIGHT = 1 << 20  # elements: layers this wide are bound by reading the weight, where one GEMM wins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        library = x.device.type != "cpu" or self.groups != 1 or self.dilation != (1,) or isinstance(self.padding, str)
        if library or (x.shape[0] < self.MATMUL_MIN_BATCH and self.weight.numel() < self.MATMUL_MIN_WEIGHT):
            return super().forward(x)
        (kernel,), (pad,), (stride,) = self.kernel_size, self.padding, self.stride
        windows = F.pad(x, (pad, pad)).unfold(2, kernel, stride)  # (B, C, L', k)
        windows = windows.permute(0, 2, 1, 3).reshape(x.shape[0], windows.shape[2], -1)  # (B, L', C * k)
        return F.linear(windows, self.weight.flatten(1), self.bias).transpose(1, 2)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length preserved."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        if out_channels % n_groups:
            raise ValueError(f"U-Net widths must be divisible by n_groups={n_groups}, got {out_channels}")
        super().__init__(
            Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks; between them the condition sets a per-channel scale and bias (FiLM); a residual path."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.first = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.second = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.residual = Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = self.first(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        out = self.second(scale * out + bias)
        return out + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """(B, T, action_dim) noisy actions, (B,) steps, (B, cond_dim) observation features -> (B, T, action_dim).

    Each level halves the sequence length (strided conv) on the way down and doubles it back (transposed conv),
    with skip connections; T must be divisible by 2 ** (len(down_dims) - 1).
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: list[int],
        kernel_size: int = 5,
        n_groups: int = 8,
        step_embed_dim: int = 128,
    ):
        super().__init__()
        self.levels = len(down_dims)
        self.step_encoder = step_encoder(step_embed_dim)
        cond = step_embed_dim + cond_dim
        widths = [action_dim, *down_dims]

        def block(i: int, o: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(i, o, cond, kernel_size, n_groups)

        self.down = nn.ModuleList()
        for level, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = level == self.levels - 1
            sample = nn.Identity() if last else Conv1d(w_out, w_out, 3, stride=2, padding=1)
            self.down.append(nn.ModuleList([block(w_in, w_out), block(w_out, w_out), sample]))
        self.mid = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList()
        for w_out, w_in in reversed(list(zip(down_dims[:-1], down_dims[1:]))):
            sample = nn.ConvTranspose1d(w_out, w_out, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([block(2 * w_in, w_out), block(w_out, w_out), sample]))
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups), Conv1d(down_dims[0], action_dim, 1)
        )

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (self.levels - 1)
        if sample.shape[1] % factor:
            raise ValueError(f"the U-Net needs a horizon divisible by {factor}, got {sample.shape[1]}")
        cond = torch.cat([self.step_encoder(timesteps), cond], dim=-1)
        x = sample.transpose(1, 2)
        skips = []
        for first, second, downsample in self.down:
            x = second(first(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        for first, second, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(second(first(x, cond), cond))
        return self.final(x).transpose(1, 2)


class TransformerDenoiser(nn.Module):
    """The paper's transformer variant: (B, T, action_dim) noisy actions attend causally among themselves and to
    [step token, one token per observed step] by cross-attention (each action token sees the observations only).

    Args:
        cond_dim: width of one observed step's features; ``n_obs_steps`` tokens of it form the condition.
    """

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        horizon: int,
        n_obs_steps: int,
        n_layer: int = 8,
        n_head: int = 4,
        n_emb: int = 256,
        p_drop_emb: float = 0.0,
        p_drop_attn: float = 0.3,
        causal_attn: bool = True,
    ):
        super().__init__()
        self.n_obs_steps = n_obs_steps
        self.input = nn.Linear(action_dim, n_emb)
        self.position = nn.Parameter(torch.zeros(1, horizon, n_emb))
        self.cond_input = nn.Linear(cond_dim, n_emb)
        self.cond_position = nn.Parameter(torch.zeros(1, 1 + n_obs_steps, n_emb))
        self.step_embedding = SinusoidalStepEmbedding(n_emb)
        self.dropout = nn.Dropout(p_drop_emb)
        self.cond_encoder = nn.Sequential(nn.Linear(n_emb, 4 * n_emb), nn.Mish(), nn.Linear(4 * n_emb, n_emb))
        layer = nn.TransformerDecoderLayer(
            n_emb, n_head, 4 * n_emb, p_drop_attn, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, n_layer)
        self.norm = nn.LayerNorm(n_emb)
        self.head = nn.Linear(n_emb, action_dim)
        self.causal = causal_attn
        if causal_attn:  # action t sees actions <= t, the step token and observed steps <= t
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(horizon), persistent=False)
            steps, tokens = torch.arange(horizon)[:, None], torch.arange(1 + n_obs_steps)[None, :]
            hidden = (tokens > 0) & (tokens - 1 > steps)
            self.register_buffer("memory_mask", torch.zeros(hidden.shape).masked_fill(hidden, float("-inf")), False)
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.cond_position, std=0.02)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        batch, horizon = sample.shape[:2]
        obs = self.cond_input(cond.view(batch, self.n_obs_steps, -1))
        step = self.step_embedding(timesteps).unsqueeze(1)
        memory = self.cond_encoder(self.dropout(torch.cat([step, obs], dim=1) + self.cond_position))
        x = self.dropout(self.input(sample) + self.position[:, :horizon])
        if self.causal:
            x = self.decoder(
                x,
                memory,
                tgt_mask=self.mask[:horizon, :horizon],
                memory_mask=self.memory_mask[:horizon],
                tgt_is_causal=True,
            )
        else:
            x = self.decoder(x, memory)
        return self.head(self.norm(x))
