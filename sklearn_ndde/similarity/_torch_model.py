"""The torch network of the learned pair similarity (imports torch)."""

import math

import torch
from torch import nn

from .._calibration import _GRID_SIZE


def rank_encoding(length, d_model):
    """Sinusoidal encoding of positions ``0 .. length - 1`` (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    enc = torch.zeros(length, d_model)
    enc[:, 0::2] = torch.sin(position * freq)
    enc[:, 1::2] = torch.cos(position * freq[: d_model // 2])
    return enc


class PairScorer(nn.Module):
    """Transformer over an anchor's neighbour sequence, then a pair MLP.

    Input ``(batch, seq, n_features)``: position 0 is the anchor, the others
    its neighbours by rank. With ``profile=None`` a face enters as its unit
    embedding; with ``profile=m`` as its cosines to the first ``m`` faces of
    the sequence. Output ``(batch, seq)`` logits that each position
    shares the anchor's identity. Attention runs over the sequence
    (``batch_first=True``), not across the anchors of a batch. With
    ``residual=True`` the MLP's output is added to the logit of a fixed
    calibration of the anchor-neighbour cosine (a curve tabulated at
    ``calibration_grid``, set by the trainer), and the MLP's last layer
    starts at zero, so that the untrained model is that calibration.
    """

    def __init__(
        self,
        n_features,
        d_model,
        n_heads,
        n_layers,
        dim_feedforward,
        dropout,
        profile=None,
        residual=False,
    ):
        super().__init__()
        self.d_model = d_model
        self.profile = profile
        # Where the cosines of the training kNN graph lie (mean, standard
        # deviation), set by the trainer; saved with the weights.
        self.register_buffer("cosine_scale", torch.tensor([0.0, 1.0]))
        self.residual = residual
        if residual:
            # The calibrated cosine's logit, tabulated (set by the trainer).
            grid = torch.linspace(-1.0, 1.0, _GRID_SIZE)
            self.register_buffer("calibration_grid", grid)
            self.register_buffer("calibration_logit", torch.zeros(_GRID_SIZE))
        width = n_features if profile is None else profile
        self.project = nn.Identity() if width == d_model else nn.Linear(width, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            batch_first=True,
            norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(
            layer, n_layers, enable_nested_tensor=False
        )
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 1),
        )
        if residual:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, seq):
        # Unit-norm faces (the method's input), scaled as token embeddings are
        # so that the rank encoding does not drown them.
        seq = nn.functional.normalize(seq, dim=-1)
        if self.profile is None:
            tokens = seq * math.sqrt(self.d_model)
        else:
            # Each face described by its cosines to the first `profile` faces
            # of the sequence: relations, not identities, so the model
            # transfers to identities it never saw. Standardised by the
            # training graph's cosines, not per sequence: the absolute level
            # of a cosine is what says "same identity" for a given embedding
            # model (per-sequence scaling: LFW test BCubed F 0.912 dlib,
            # 0.830 mobileface; this: 0.944, 0.879).
            tokens = seq @ seq[:, : self.profile].transpose(1, 2)
            mean, std = self.cosine_scale[0], self.cosine_scale[1]
            tokens = (tokens - mean) / std
        h = self.project(tokens)
        h = h + rank_encoding(h.shape[1], self.d_model).to(h.device, h.dtype)
        t = self.encoder(h)
        anchor = t[:, :1].expand_as(t)
        logits = self.mlp(torch.cat([anchor, t], dim=-1)).squeeze(-1)
        if self.residual:
            logits = logits + self.calibrated_logit(seq)
        return logits

    def calibrated_logit(self, seq):
        """Logit of the calibrated cosine of each face to the anchor.

        In float32 (an element-wise product, which autocast leaves alone):
        dlib cosines differ in the third decimal.
        """
        unit = seq.float()
        cosine = (unit * unit[:, :1]).sum(-1).contiguous()
        grid, curve = self.calibration_grid, self.calibration_logit
        right = torch.searchsorted(grid, cosine).clamp(1, grid.numel() - 1)
        left = right - 1
        weight = ((cosine - grid[left]) / (grid[right] - grid[left])).clamp(0, 1)
        return curve[left] + weight * (curve[right] - curve[left])
