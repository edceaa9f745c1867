"""A Siamese network for the distance between two projections' orientations.

The shared encoder works on each image in polar coordinates (radius x in-plane angle) with
circular padding along the angle, so turning an image in its plane turns into a cyclic
shift of its embedding (exactly, for multiples of the angular step). The head correlates
two embeddings over every cyclic shift: the best shift is the in-plane angle ``alpha``
between the images, and a small MLP reads the view-direction angle ``theta`` from the
correlation profile. The geodesic distance of a rotation ``Rz(a) Ry(theta) Rz(b)`` is
``2 arccos(cos(theta / 2) cos((a + b) / 2))``, which is what the head returns with
``a + b = alpha``. For far views ``alpha`` means little, so the MLP also says how far to
trust it, falling back to a learned typical ``|cos(alpha / 2)|``. The comparison, not
the look of one structure, is what is learned, so the network transfers to structures it
never saw; the distance is symmetric by construction (swapping the images mirrors the
correlation profile).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emkit.errors import InputError

__all__ = ["PolarSiameseNet"]


class _PolarConv(nn.Module):
    """3x3 convolution, circular along the angle axis, zero-padded along the radius."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=0, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 0, 0), mode="circular")
        x = F.pad(x, (0, 0, 1, 1))
        return F.relu(self.norm(self.conv(x)))


class PolarSiameseNet(nn.Module):
    """Shared polar encoder + correlation head: the angle between two orientations.

    Parameters
    ----------
    image_size : int
        Side of the (square) input images in pixels.
    n_radii, n_angles : int
        Polar grid: radii from the centre to the edge, in-plane angles over 360 degrees.
    channels : sequence of int
        Channels of the encoder's convolutions; the radius is halved after each.
    embed_channels : int
        Channels of the embedding (``(embed_channels, n_angles)`` per image).
    hidden : int
        Hidden units of the head's MLP.

    Examples
    --------
    >>> net = PolarSiameseNet(image_size=32).eval()
    >>> e = net.embed(torch.zeros(2, 1, 32, 32))
    >>> net.pair_distance(e[:1], e[1:]).shape
    torch.Size([1])
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        n_radii: int = 16,
        n_angles: int = 64,
        channels: tuple[int, ...] | list[int] = (8, 16, 32),
        embed_channels: int = 32,
        hidden: int = 32,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        if image_size < 8 or n_radii < 2 ** len(chans) or n_angles < 8 or not chans:
            raise InputError(
                f"need image_size >= 8, n_angles >= 8 and n_radii >= 2**len(channels); got "
                f"{image_size}, {n_angles}, {n_radii}, {chans}"
            )
        if min(chans) < 1 or embed_channels < 1 or hidden < 1:
            raise InputError("channel and hidden counts must be positive")
        self.image_size, self.n_radii, self.n_angles = int(image_size), int(n_radii), int(n_angles)
        self.channels, self.embed_channels, self.hidden = chans, int(embed_channels), int(hidden)
        self.blocks = nn.ModuleList(
            [_PolarConv(1 if i == 0 else chans[i - 1], c) for i, c in enumerate(chans)]
        )
        radii_left = self.n_radii // 2 ** len(chans)
        self.project = nn.Conv1d(chans[-1] * radii_left, self.embed_channels, 1)
        self.head = nn.Sequential(
            nn.Linear(8, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, 2),
        )
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.05)))
        # |cos(alpha / 2)| expected when the in-plane angle cannot be read (far views)
        self.far_logit = nn.Parameter(torch.tensor(0.5))
        self.register_buffer("polar_grid", self._polar_grid(), persistent=False)

    def _polar_grid(self) -> torch.Tensor:
        """``grid_sample`` coordinates ``(1, n_radii, n_angles, 2)`` of the polar samples."""
        half = (self.image_size - 1) / 2.0
        radii = (torch.arange(self.n_radii, dtype=torch.float32) + 0.5) * (half / self.n_radii)
        angles = torch.arange(self.n_angles, dtype=torch.float32) * (2 * math.pi / self.n_angles)
        r, a = torch.meshgrid(radii, angles, indexing="ij")
        x, y = r * torch.cos(a), r * torch.sin(a)
        return torch.stack([x / half, y / half], dim=-1)[None]

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (stored in a model folder's config.json)."""
        return {
            "name": "PolarSiameseNet",
            "image_size": self.image_size,
            "n_radii": self.n_radii,
            "n_angles": self.n_angles,
            "channels": list(self.channels),
            "embed_channels": self.embed_channels,
            "hidden": self.hidden,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PolarSiameseNet:
        """Build an (untrained) network from :meth:`config`'s dictionary."""
        keys = ("image_size", "n_radii", "n_angles", "channels", "embed_channels", "hidden")
        missing = [k for k in keys if k not in config]
        if config.get("name") != "PolarSiameseNet" or missing:
            raise InputError(f"not a PolarSiameseNet configuration (missing {missing})")
        return cls(**{k: config[k] for k in keys})

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(batch, 2, embed_channels, n_angles)`` of ``(batch, 1, s, s)`` images.

        Index 0 along the second axis embeds the image, index 1 its mirror image (``x`` ->
        ``-x``: the view from the other side, ``Ry(180) A``), each of unit norm. The images
        are centred on pixel ``(s - 1) / 2``; turning one by a multiple of
        ``360 / n_angles`` degrees rolls its embedding along the last axis.
        """
        s = self.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, s, s):
            raise InputError(
                f"images of shape {tuple(images.shape)}: expected (batch, 1, {s}, {s})"
            )
        grid = self.polar_grid.expand(images.shape[0], -1, -1, -1)
        x = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        mirror = (self.n_angles // 2 - torch.arange(self.n_angles)) % self.n_angles  # pi - phi
        x = torch.cat([x, x[..., mirror.to(x.device)]])
        for block in self.blocks:
            x = F.max_pool2d(block(x), (2, 1))
        x = self.project(x.flatten(1, 2))
        x = x / (x.flatten(1).norm(dim=1)[:, None, None] + 1e-8)
        return torch.stack(x.chunk(2), dim=1)

    def _correlation(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """``(m, n_angles)``: correlation of embedding 2 rolled by each shift against 1,
        from their spectra along the angle axis (``torch.fft.rfft(e, dim=-1)``)."""
        return torch.fft.irfft((f1.conj() * f2).sum(dim=1), n=self.n_angles, dim=-1)

    def spectra(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`distance_from_spectra` needs of each image, computed once per image.

        Returns the spectra along the angle axis ``(m, 2, embed_channels, n_angles // 2 + 1)``
        of :meth:`embed`'s output and how alike each image is to its own mirror image
        ``(m,)`` (1: achiral).
        """
        f = torch.fft.rfft(embeddings, dim=-1)
        return f, self._correlation(f[:, 0], f[:, 1]).max(dim=-1).values

    def pair_distance(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """Geodesic angle (radians, ``[0, pi]``) between the orientations of paired embeddings.

        Parameters
        ----------
        e1, e2 : torch.Tensor, shape (m, 2, embed_channels, n_angles)
            Embeddings from :meth:`embed`; row ``i`` of each forms pair ``i``.

        Returns
        -------
        torch.Tensor, shape (m,)
        """
        return self.distance_from_spectra(*self.spectra(e1), *self.spectra(e2))

    def distance_from_spectra(
        self, f1: torch.Tensor, achiral1: torch.Tensor, f2: torch.Tensor, achiral2: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`pair_distance` from :meth:`spectra` of both sides (cheaper for many pairs).

        Besides the image-to-image correlation, the head sees how well each image matches
        the other's mirror image (a far pair of views from opposite sides looks like a
        near pair when the projections are nearly achiral) and how achiral each image is.
        """
        n = self.n_angles
        corr = self._correlation(f1[:, 0], f2[:, 0])  # (m, n): shift s of e2 vs e1
        weights = torch.softmax(corr / self.log_temperature.exp(), dim=-1)
        phases = torch.arange(n, device=corr.device, dtype=corr.dtype) * (2 * math.pi / n)
        alpha = torch.atan2((weights * phases.sin()).sum(-1), (weights * phases.cos()).sum(-1))
        best = corr.max(dim=-1).values
        mirrored = 0.5 * (self._correlation(f1[:, 0], f2[:, 1]).max(dim=-1).values
                          + self._correlation(f1[:, 1], f2[:, 0]).max(dim=-1).values)
        u1, u2 = f1[:, 0, :, 0].real / n, f2[:, 0, :, 0].real / n  # means over the angle
        features = torch.stack([
            best, corr.mean(dim=-1), corr.std(dim=-1), (u1 - u2).abs().sum(dim=-1),
            (u1 * u2).sum(dim=-1) * n, mirrored, mirrored - best, 0.5 * (achiral1 + achiral2),
        ], dim=-1)
        out = self.head(features)
        theta = math.pi * torch.sigmoid(out[:, 0])
        trust = torch.sigmoid(out[:, 1])  # how far the in-plane angle alpha can be trusted
        in_plane = trust * torch.cos(alpha / 2).abs() + (1 - trust) * torch.sigmoid(self.far_logit)
        cos_half = torch.cos(theta / 2) * in_plane
        sin_half = torch.sqrt(torch.clamp(1.0 - cos_half**2, min=0.0) + 1e-8)
        return 2.0 * torch.atan2(sin_half, cos_half)

    def forward(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        """Distance (radians) between the orientations of ``images_a[i]`` and ``images_b[i]``."""
        return self.pair_distance(self.embed(images_a), self.embed(images_b))
