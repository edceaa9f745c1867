"""One U-Net for 2D and 3D images, with one shared encoder and any number of decoder heads."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emkit.errors import InputError

__all__ = ["UNet"]


def _conv(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def _norm(spatial_dims: int) -> type[nn.Module]:
    # BatchNorm: in eval mode a fixed affine map, so tiled inference equals whole-image
    # inference (a per-sample norm would depend on the tile's own statistics).
    return nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d


class _DoubleConv(nn.Sequential):
    def __init__(self, spatial_dims: int, c_in: int, c_out: int) -> None:
        conv, norm = _conv(spatial_dims), _norm(spatial_dims)
        super().__init__(
            conv(c_in, c_out, 3, padding=1, bias=False),
            norm(c_out),
            nn.ReLU(inplace=True),
            conv(c_out, c_out, 3, padding=1, bias=False),
            norm(c_out),
            nn.ReLU(inplace=True),
        )


class _Decoder(nn.Module):
    """Upsampling path from the bottleneck to full resolution, with or without skips."""

    def __init__(self, spatial_dims: int, widths: list[int], c_out: int, skips: bool) -> None:
        super().__init__()
        up = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        self.skips = skips
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for level in range(len(widths) - 1, 0, -1):
            c_deep, c_skip = widths[level], widths[level - 1]
            self.ups.append(up(c_deep, c_skip, 2, stride=2))
            c_in = 2 * c_skip if skips else c_skip
            self.blocks.append(_DoubleConv(spatial_dims, c_in, c_skip))
        self.out = _conv(spatial_dims)(widths[0], c_out, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for i, (up, block) in enumerate(zip(self.ups, self.blocks)):
            x = up(x)
            if self.skips:
                x = torch.cat([features[-2 - i], x], dim=1)
            x = block(x)
        return self.out(x)


class UNet(nn.Module):
    """U-Net with a shared encoder and one decoder per output head, 2D or 3D.

    Parameters
    ----------
    spatial_dims : {2, 3}
        2 for images ``(batch, channel, y, x)``, 3 for volumes ``(batch, channel, z, y, x)``.
    in_channels : int
        Input channels.
    out_channels : int or sequence of int
        Output channels of each head; one number means one head. Deep-SXT uses two heads:
        ``(n_classes, 1)`` (label logits and the reconstructed image).
    width : int
        Channels of the first level; each deeper level doubles them.
    depth : int
        Number of poolings (levels - 1); input sizes must be multiples of ``2**depth``
        (:func:`emkit.nn.predict_tiled` pads for you).
    skip_connections : bool or sequence of bool
        Per head: whether its decoder receives the encoder's skip connections. A
        reconstruction head without skips cannot copy its input through, so it has to learn
        from the encoder's features (what semi-supervised training relies on).

    Examples
    --------
    >>> net = UNet(spatial_dims=2, out_channels=(5, 1), width=8, depth=2,
    ...            skip_connections=(True, False))
    >>> [o.shape for o in net(torch.zeros(1, 1, 32, 32))]
    [torch.Size([1, 5, 32, 32]), torch.Size([1, 1, 32, 32])]
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int | tuple[int, ...] | list[int] = 2,
        width: int = 16,
        depth: int = 3,
        skip_connections: bool | tuple[bool, ...] | list[bool] = True,
    ) -> None:
        super().__init__()
        heads = (out_channels,) if isinstance(out_channels, int) else tuple(out_channels)
        skips = (
            (skip_connections,) * len(heads)
            if isinstance(skip_connections, bool)
            else tuple(bool(s) for s in skip_connections)
        )
        if spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if not heads or min(int(c) for c in heads) < 1:
            raise InputError(f"out_channels must be positive channel counts, got {out_channels}")
        if len(skips) != len(heads):
            raise InputError(f"{len(skips)} skip_connections flags for {len(heads)} heads")
        if in_channels < 1 or width < 1 or depth < 0:
            raise InputError(
                f"need in_channels >= 1, width >= 1, depth >= 0; got {in_channels}, {width}, "
                f"{depth}"
            )
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = tuple(int(c) for c in heads)
        self.width = int(width)
        self.depth = int(depth)
        self.skip_connections = skips
        widths = [width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            [_DoubleConv(spatial_dims, in_channels if i == 0 else widths[i - 1], w)
             for i, w in enumerate(widths)]
        )
        self.pool = nn.MaxPool2d(2) if spatial_dims == 2 else nn.MaxPool3d(2)
        self.decoders = nn.ModuleList(
            [_Decoder(spatial_dims, widths, c, s) for c, s in zip(self.out_channels, skips)]
        )

    @property
    def size_multiple(self) -> int:
        """Input sizes must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (stored in a model folder's config.json)."""
        return {
            "name": "UNet",
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "out_channels": list(self.out_channels),
            "width": self.width,
            "depth": self.depth,
            "skip_connections": list(self.skip_connections),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UNet:
        """Build an (untrained) network from :meth:`config`'s dictionary."""
        keys = ("spatial_dims", "in_channels", "out_channels", "width", "depth",
                "skip_connections")
        missing = [k for k in keys if k not in config]
        if config.get("name", "UNet") != "UNet" or missing:
            raise InputError(f"not a UNet configuration (missing {missing})")
        return cls(**{k: config[k] for k in keys})

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of every level, finest first."""
        bad = [s for s in x.shape[2:] if s % self.size_multiple]
        if x.ndim != self.spatial_dims + 2 or bad:
            raise InputError(
                f"input of shape {tuple(x.shape)}: expected {self.spatial_dims + 2} dims "
                f"with spatial sizes that are multiples of {self.size_multiple}"
            )
        features = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            features.append(x)
        return features

    def forward(
        self, x: torch.Tensor, heads: tuple[int, ...] | None = None
    ) -> list[torch.Tensor]:
        """Outputs of the requested heads (all by default), each ``(batch, c_head, ...)``."""
        features = self.encode(x)
        chosen = range(len(self.decoders)) if heads is None else heads
        return [self.decoders[h](features) for h in chosen]
