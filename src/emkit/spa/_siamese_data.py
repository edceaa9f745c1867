"""Images for the distance network: the shared preprocessing, projection banks, augmentation.

Training never projects inside its loop. Each training volume is projected once at a few
thousand orientations (a *bank*: groups of nearby orientations, so that close pairs exist);
each step draws pairs from the banks and makes them look like particle images: an in-plane
turn (exact: a projection turned in its plane is the projection at ``Rz(a) A``), CTF,
a shift and noise at a random SNR. The same :func:`prepare_images` then brings training
and user images alike to the network's input (size, centring, intensity scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

__all__ = ["AugmentSettings", "ProjectionBank", "augment_pairs", "make_bank", "prepare_images"]

# A projection turned in its plane has some interpolation blur; the distances of bank
# neighbours are drawn from this range (degrees) around each group's first orientation.
NEIGHBOUR_MAX_DEG = 30.0


def _fourier_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resample ``(n, L, L)`` to ``(n, size, size)`` by cropping or padding the spectrum."""
    n, length = images.shape[0], images.shape[-1]
    if length == size:
        return images
    spec = torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1))
    if size < length:
        start = length // 2 - size // 2
        spec = spec[:, start:start + size, start:start + size]
    else:
        pad = torch.zeros((n, size, size), dtype=spec.dtype)
        start = size // 2 - length // 2
        pad[:, start:start + length, start:start + length] = spec
        spec = pad
    out = torch.fft.ifft2(torch.fft.ifftshift(spec, dim=(-2, -1))).real
    return out * (size * size) / (length * length)


def _fourier_shift(images: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Move the content of ``(n, s, s)`` images by ``(dy, dx)`` pixels (periodic)."""
    s = images.shape[-1]
    freq = torch.fft.fftfreq(s, dtype=images.dtype)
    phase = shifts_px[:, 0, None, None] * freq[None, :, None] + shifts_px[:, 1, None, None] * \
        freq[None, None, :]
    spec = torch.fft.fft2(images) * torch.exp(-2j * math.pi * phase)
    return torch.fft.ifft2(spec).real


def _centre_by_mass(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Shift each image so that the centre of its low-passed energy is the image centre.

    The energy (low-passed image minus its median, squared) is positive under the particle
    whatever the CTF did to its sign; the background's share of it is what the median
    removes. Shifts are capped at a quarter of the image.
    """
    s = images.shape[-1]
    freq = torch.fft.fftfreq(s, dtype=images.dtype)
    k2 = freq[:, None] ** 2 + freq[None, :] ** 2
    blur = torch.exp(-2.0 * (math.pi * sigma_px) ** 2 * k2)
    low = torch.fft.ifft2(torch.fft.fft2(images) * blur).real
    low = low - low.flatten(1).median(dim=1).values[:, None, None]
    energy = low**2
    energy = torch.clamp(energy - energy.flatten(1).median(dim=1).values[:, None, None], min=0)
    total = energy.sum(dim=(1, 2)) + 1e-12
    coords = torch.arange(s, dtype=images.dtype) - (s - 1) / 2.0
    cy = (energy.sum(dim=2) * coords).sum(dim=1) / total
    cx = (energy.sum(dim=1) * coords).sum(dim=1) / total
    shift = torch.clamp(-torch.stack([cy, cx], dim=1), -s / 4.0, s / 4.0)
    return _fourier_shift(images, shift)


def prepare_images(images: torch.Tensor, settings: dict[str, Any]) -> torch.Tensor:
    """Bring ``(n, L, L)`` particle images to the network's input ``(n, 1, s, s)``.

    Resample to ``settings["image_size"]`` (Fourier crop or pad, so any box size works),
    centre each image on its low-passed energy (``settings["centre"]``), then scale each
    image's 1st..99th percentiles to 0..1 (so gain and offset do not matter).
    """
    size = int(settings["image_size"])
    x = _fourier_resize(images.to(torch.float32), size)
    if settings.get("centre", True):
        x = _centre_by_mass(x, float(settings.get("centre_sigma_px", 1.5)))
    lower = float(settings.get("lower_percentile", 1.0)) / 100.0
    upper = float(settings.get("upper_percentile", 99.0)) / 100.0
    levels = torch.quantile(x.flatten(1), torch.tensor([lower, upper]), dim=1)
    span = torch.clamp(levels[1] - levels[0], min=1e-12)
    return ((x - levels[0][:, None, None]) / span[:, None, None])[:, None]


@dataclass
class ProjectionBank:
    """Clean projections of one volume and their orientations.

    Attributes
    ----------
    images : torch.Tensor, shape (n, L, L), float32
        Projections ``(n, y, x)``.
    rotations : torch.Tensor, shape (n, 3, 3), float32
        Their rotations (emkit/RELION meaning); rows ``g * group .. (g + 1) * group`` are
        one group of nearby orientations.
    group : int
        Orientations per group.
    """

    images: torch.Tensor
    rotations: torch.Tensor
    group: int


def make_bank(volume: NDArray[np.floating], n_groups: int, group: int, seed: int
              ) -> ProjectionBank:
    """Project ``volume`` ``(L, L, L)`` at ``n_groups`` random orientations and, for each,
    ``group - 1`` neighbours up to :data:`NEIGHBOUR_MAX_DEG` away."""
    from emkit.geometry import axis_angle_to_matrix, random_rotations
    from emkit.ops import project_3d

    rng = np.random.default_rng(seed)
    base = random_rotations(n_groups, seed=seed)
    axes = rng.standard_normal((n_groups, group, 3))
    angles = rng.uniform(0.0, NEIGHBOUR_MAX_DEG, (n_groups, group))
    angles[:, 0] = 0.0
    turns = axis_angle_to_matrix(axes, angles)
    rotations = np.einsum("gkij,gjl->gkil", turns, base).reshape(-1, 3, 3)
    images = project_3d(np.asarray(volume, dtype=np.float32), rotations, method="fourier")
    return ProjectionBank(torch.from_numpy(images), torch.from_numpy(rotations).float(), group)


@dataclass(frozen=True)
class AugmentSettings:
    """How training pairs are made to look like particle images.

    ``snr_range``: log-uniform SNR (signal variance / noise variance over the image);
    ``p_clean``: share of noise-free images; ``p_ctf``: share with a CTF; ``max_shift_px``:
    shifts up to this radius on the bank's box; ``ctf_bank``: CTFs to draw from
    ``(n, L, L // 2 + 1)`` (rfft layout), made by :func:`emkit.ops.ctf_2d`.
    """

    snr_range: tuple[float, float] = (1 / 32, 2.0)
    p_clean: float = 0.25
    p_ctf: float = 0.7
    max_shift_px: float = 4.0
    ctf_bank: torch.Tensor | None = None


def ctf_table(box_px: int, voxel_size_A: float, n: int, seed: int) -> torch.Tensor:
    """``n`` CTFs (rfft layout) with defocus 0.5-3 um and pixel sizes around ``voxel_size_A``."""
    from emkit.ops import ctf_2d

    rng = np.random.default_rng(seed)
    table = [ctf_2d((box_px, box_px), pixel_size_A=voxel_size_A * rng.uniform(0.8, 1.25),
                    defocus_A=rng.uniform(5_000.0, 30_000.0), bfactor_A2=rng.uniform(0, 100),
                    layout="rfft") for _ in range(n)]
    return torch.from_numpy(np.stack(table))


def _turn_in_plane(images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The projections at ``Rz(alpha) A`` from those at ``A``: ``I'(p) = I(Rz(alpha).T p)``."""
    n, s = images.shape[0], images.shape[-1]
    c, si = torch.cos(alpha), torch.sin(alpha)
    theta = torch.zeros((n, 2, 3), dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = c, -si
    theta[:, 1, 0], theta[:, 1, 1] = si, c
    grid = F.affine_grid(theta, [n, 1, s, s], align_corners=True)
    return F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)[:, 0]


def corrupt(images: torch.Tensor, settings: AugmentSettings, gen: torch.Generator
            ) -> torch.Tensor:
    """CTF, shift and noise at a random SNR for each image of ``(n, L, L)``."""
    n, s = images.shape[0], images.shape[-1]
    spec = torch.fft.rfft2(images)
    if settings.ctf_bank is not None:
        pick = torch.randint(0, settings.ctf_bank.shape[0], (n,), generator=gen)
        use = torch.rand(n, generator=gen) < settings.p_ctf
        ctf = torch.where(use[:, None, None], settings.ctf_bank[pick], torch.ones(1))
        spec = spec * ctf
    radius = settings.max_shift_px * torch.sqrt(torch.rand(n, generator=gen))
    phi = 2 * math.pi * torch.rand(n, generator=gen)
    fy = torch.fft.fftfreq(s)[:, None]
    fx = torch.fft.rfftfreq(s)[None, :]
    phase = (radius * torch.sin(phi))[:, None, None] * fy + (radius * torch.cos(phi))[
        :, None, None] * fx
    clean = torch.fft.irfft2(spec * torch.exp(-2j * math.pi * phase), s=(s, s))
    lo, hi = (math.log(v) for v in settings.snr_range)
    snr = torch.exp(lo + (hi - lo) * torch.rand(n, generator=gen))
    sigma = torch.sqrt(clean.flatten(1).var(dim=1) / snr)
    sigma = torch.where(torch.rand(n, generator=gen) < settings.p_clean, 0.0, sigma)
    return clean + sigma[:, None, None] * torch.randn(clean.shape, generator=gen)


def _angle_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (radians) between rotation matrices ``(m, 3, 3)``."""
    rel = a.transpose(1, 2) @ b
    cos = 0.5 * (rel.diagonal(dim1=1, dim2=2).sum(-1) - 1.0)
    axial = torch.stack([rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0],
                         rel[:, 1, 0] - rel[:, 0, 1]], dim=-1)
    return torch.atan2(0.5 * axial.norm(dim=-1), cos)


def _rz(alpha: torch.Tensor) -> torch.Tensor:
    """emkit's (passive) ``Rz``: the in-plane turn of the particle frame, ``(m, 3, 3)``."""
    c, s = torch.cos(alpha), torch.sin(alpha)
    out = torch.zeros((alpha.shape[0], 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = c, s, -s, c
    out[:, 2, 2] = 1.0
    return out


def _sample_indices(bank: ProjectionBank, m: int, gen: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair indices into ``bank``, the second image's extra in-plane turn and mirror flags.

    35 % of pairs are neighbours within a group (small extra turn, both mirrored or neither),
    15 % the same neighbours with one image mirrored (a near-lookalike that is far: the
    mirror image is the view from the other side), 50 % any two images, mirrored at random.
    """
    n = bank.images.shape[0]
    kind = torch.rand(m, generator=gen)
    near, mirror_pair = kind < 0.5, (kind >= 0.35) & (kind < 0.5)
    first = torch.randint(0, n, (m,), generator=gen)
    group_start = (first // bank.group) * bank.group
    partner = group_start + torch.randint(0, bank.group, (m,), generator=gen)
    second = torch.where(near, partner, torch.randint(0, n, (m,), generator=gen))
    small = torch.deg2rad(torch.randn(m, generator=gen) * 12.0)
    delta = torch.where(near, small, 2 * math.pi * torch.rand(m, generator=gen))
    flip_a = torch.rand(m, generator=gen) < 0.5
    flip_b = torch.where(near, flip_a ^ mirror_pair, torch.rand(m, generator=gen) < 0.5)
    flips = torch.stack([flip_a, flip_b], dim=1)
    return first, second, delta, flips


def _mirror(images: torch.Tensor, rotations: torch.Tensor, flip: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror the chosen images in x: the projection at ``Ry(180) A`` (seen from behind)."""
    turned = torch.diag(torch.tensor([-1.0, 1.0, -1.0])) @ rotations
    return (torch.where(flip[:, None, None], images.flip(-1), images),
            torch.where(flip[:, None, None], turned, rotations))


def augment_pairs(banks: list[ProjectionBank], m: int, settings: AugmentSettings,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``m`` training pairs drawn over the banks.

    Returns
    -------
    images_a, images_b : torch.Tensor, shape (m, L, L)
        Corrupted particle images (not yet prepared for the network).
    distance : torch.Tensor, shape (m,)
        Geodesic angle (radians) between their true orientations.
    """
    which = torch.randint(0, len(banks), (m,), generator=gen)
    a_img, b_img, a_rot, b_rot = [], [], [], []
    for k in range(len(banks)):
        rows = int((which == k).sum())
        if rows == 0:
            continue
        i, j, delta, flips = _sample_indices(banks[k], rows, gen)
        alpha = 2 * math.pi * torch.rand(rows, generator=gen)
        for index, turn, flip, img_out, rot_out in ((i, alpha, flips[:, 0], a_img, a_rot),
                                                    (j, alpha + delta, flips[:, 1], b_img, b_rot)):
            images, rotations = _mirror(banks[k].images[index], banks[k].rotations[index], flip)
            img_out.append(_turn_in_plane(images, turn))
            rot_out.append(_rz(turn) @ rotations)
    images_a = corrupt(torch.cat(a_img), settings, gen)
    images_b = corrupt(torch.cat(b_img), settings, gen)
    return images_a, images_b, _angle_between(torch.cat(a_rot), torch.cat(b_rot))
