"""Simulated tilt series with known misalignment: phantom or crowded particles -> projections.

The inverse crime (simulating with the very operator the reconstruction inverts) is avoided
cheaply: the phantom is sampled ``oversample`` times finer, projected on a finer detector,
shifted there, and only then binned to the output pixel size. So the data are not in the
range of the coarse projector, and the shift interpolation is not the one alignment uses.

Conventions (as :mod:`emkit.tomo`): stack ``(n, y, x)``, tilt axis along y through the
centre column; ``shifts_px[i] = (dy, dx)`` is the shift that *aligns* raw image ``i``
(``aligned(y, x) = raw(y - dy, x - dx)``, IMOD ``.xf`` translation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from emkit.errors import InputError

__all__ = ["PHANTOMS", "SimulatedTiltSeries", "simulate_tilt_series"]

PHANTOMS = ("ellipsoids", "shepp-logan", "particles")


@dataclass
class SimulatedTiltSeries:
    """A simulated tilt series and its ground truth.

    Attributes
    ----------
    stack : ndarray, shape (n, ny, nx), float32
        The misaligned (and noisy) tilt series, in line-integral units (density x pixels).
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles in degrees.
    shifts_px : ndarray, shape (n, 2)
        True ``(dy, dx)`` alignment shifts in pixels.
    volume : ndarray, shape (nz, ny, nx), float32
        The phantom at the output voxel size (average of the finer sampling).
    clean : ndarray, shape (n, ny, nx), float32
        The noise-free, aligned projections (no CTF).
    pixel_size_A : float
        Pixel (voxel) size in Å.
    tilt_axis_angle_deg : float
        In-plane tilt-axis angle of the raw images (0: along y).
    noise_sigma : float
        Standard deviation of the added Gaussian noise (0 without noise; for Poisson noise
        the root-mean of the per-pixel standard deviations).
    info : dict
        Parameters of the simulation (for run records).
    """

    stack: np.ndarray
    tilt_angles_deg: np.ndarray
    shifts_px: np.ndarray
    volume: np.ndarray
    clean: np.ndarray
    pixel_size_A: float
    tilt_axis_angle_deg: float = 0.0
    noise_sigma: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def _phantom(
    name: str, shape: tuple[int, int, int], *, seed: int, pixel_size_A: float
) -> np.ndarray:
    from emkit import sim

    if name == "ellipsoids":
        return np.asarray(
            sim.random_ellipsoids(shape, seed=seed, n_ellipsoids=48, max_semi_axis=0.35),
            dtype=np.float32,
        )
    if name == "shepp-logan":
        return np.asarray(sim.shepp_logan_3d(shape), dtype=np.float32)
    if name == "particles":
        templates = [
            sim.density_template(t, voxel_size_A=pixel_size_A).data
            for t in (record["name"] for record in sim.list_density_templates())
        ]
        # Only templates that fit the (thin) volume; thicker volumes or coarser pixels admit
        # the bigger complexes.
        templates = [_crop_template(t) for t in templates]
        fitting = [t for t in templates if max(t.shape) < min(shape) - 2]
        if not fitting:
            raise InputError(
                f"no particle template fits a volume of {shape} voxels of {pixel_size_A:g} Å; "
                "use a thicker volume or a larger pixel size"
            )
        vol = sim.place_particles(shape, fitting, seed=seed, volume_fraction=0.2).volume
        vol = np.asarray(vol, dtype=np.float32)
        peak = float(vol.max())
        return vol / peak if peak > 0 else vol
    raise InputError(f"unknown phantom {name!r}; choose one of {PHANTOMS}")


def _crop_template(template: np.ndarray, level: float = 0.02) -> np.ndarray:
    """Crop a template's box about its centre voxel ``box // 2`` to its density above
    ``level`` times the maximum (the padding of the stored boxes does not have to fit)."""
    centre = np.array(template.shape) // 2
    above = np.argwhere(template > level * float(template.max()))
    if len(above) == 0:
        return template
    half = int(np.ceil(np.abs(above - centre).max())) + 1
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, template.shape)
    return np.ascontiguousarray(template[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])


def _raw_from_aligned(
    image: np.ndarray, shift_yx: np.ndarray, axis_deg: float, center_yx: np.ndarray
) -> np.ndarray:
    """Inverse of the alignment transform: the raw image whose alignment gives ``image``."""
    from emkit.geometry import tilt_axis_rotation_xy

    a_yx = tilt_axis_rotation_xy(axis_deg)[::-1, ::-1]
    # raw(r) = aligned(A (r - c) + c + d)
    offset = center_yx + shift_yx - a_yx @ center_yx
    return ndimage.affine_transform(image, a_yx, offset=offset, order=3, mode="constant")


def simulate_tilt_series(
    volume: np.ndarray | None = None,
    *,
    phantom: str = "ellipsoids",
    shape: tuple[int, int, int] = (32, 128, 128),
    tilt_range_deg: tuple[float, float] = (-60.0, 60.0),
    tilt_step_deg: float = 2.0,
    max_shift_px: float = 10.0,
    snr: float | None = 1.0,
    noise: str = "gaussian",
    defocus_um: float | None = None,
    voltage_kV: float = 300.0,
    pixel_size_A: float = 10.0,
    tilt_axis_angle_deg: float = 0.0,
    oversample: int = 2,
    seed: int = 0,
) -> SimulatedTiltSeries:
    """Simulate a misaligned, noisy tilt series of a phantom with its ground truth.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx), optional
        Your own volume (then ``phantom``/``shape`` are ignored and ``oversample`` is 1).
    phantom : {"ellipsoids", "shepp-logan", "particles"}
        Random ellipsoids (:func:`emkit.sim.random_ellipsoids`), the 3D Shepp-Logan head, or
        a crowded volume of the shipped PDB-derived templates
        (:func:`emkit.sim.place_particles`).
    shape : (nz, ny, nx)
        Output volume shape in voxels; images are ``(ny, nx)``.
    tilt_range_deg, tilt_step_deg : (float, float), float
        First and last tilt angle and the step (degrees).
    max_shift_px : float
        Random shifts are uniform in ``[-max_shift_px, max_shift_px]`` in y and x.
    snr : float or None
        Signal-to-noise ratio, defined as the variance of the noise-free (shifted, CTF'd)
        stack divided by the variance of the noise; None for no noise.
    noise : {"gaussian", "poisson"}
        Gaussian noise of fixed variance, or shot noise: the stack is turned into counts
        ``Poisson(dose * exp(-p / p_max))`` with the dose chosen to give ``snr`` and back into
        line integrals by ``-p_max ln(counts / dose)``.
    defocus_um : float, optional
        Apply a contrast transfer function with this underfocus (micrometres).
    voltage_kV : float
        Acceleration voltage for the CTF.
    pixel_size_A : float
        Pixel size in Å (written to the MRC header; sets the CTF and particle scale).
    tilt_axis_angle_deg : float
        Rotate the raw images so the tilt axis lies at this in-plane angle.
    oversample : int
        Sample the phantom and detector this many times finer, then bin (see module notes).
    seed : int
        Same seed, same phantom, shifts and noise.

    Returns
    -------
    SimulatedTiltSeries

    Examples
    --------
    >>> sim = simulate_tilt_series(shape=(16, 64, 64), tilt_step_deg=4, seed=1)
    >>> sim.stack.shape, sim.shifts_px.shape
    ((31, 64, 64), (31, 2))
    """
    if noise not in ("gaussian", "poisson"):
        raise InputError(f"noise must be 'gaussian' or 'poisson', got {noise!r}")
    if snr is not None and not snr > 0:
        raise InputError(f"snr must be positive, got {snr}")
    lo, hi, angles = _tilt_angles(tilt_range_deg, tilt_step_deg)
    rng = np.random.default_rng(seed)
    fine, truth, shape, oversample = _volumes(volume, phantom, shape, oversample, pixel_size_A, rng)
    nz, ny, nx = shape
    n = len(angles)
    shifts = rng.uniform(-max_shift_px, max_shift_px, size=(n, 2))
    raw, clean = _project_and_shift(
        fine, angles, shifts, (ny, nx), max_shift_px, tilt_axis_angle_deg, oversample
    )
    if defocus_um is not None:
        from emkit.ops import apply_ctf

        raw = np.asarray(
            apply_ctf(
                raw, pixel_size_A=pixel_size_A, defocus_A=defocus_um * 1e4, voltage_kV=voltage_kV
            ),
            dtype=np.float32,
        )
    sigma = 0.0
    if snr is not None:
        raw, sigma = _add_noise(raw, snr, noise, rng)
    info = {
        "phantom": "custom" if volume is not None else phantom,
        "shape_zyx": list(shape),
        "tilt_range_deg": [lo, hi],
        "tilt_step_deg": tilt_step_deg,
        "max_shift_px": max_shift_px,
        "snr": snr,
        "noise": noise if snr is not None else None,
        "defocus_um": defocus_um,
        "pixel_size_A": pixel_size_A,
        "tilt_axis_angle_deg": tilt_axis_angle_deg,
        "oversample": oversample,
        "seed": seed,
    }
    return SimulatedTiltSeries(
        stack=raw,
        tilt_angles_deg=angles,
        shifts_px=shifts,
        volume=np.asarray(truth, dtype=np.float32),
        clean=clean,
        pixel_size_A=float(pixel_size_A),
        tilt_axis_angle_deg=float(tilt_axis_angle_deg),
        noise_sigma=sigma,
        info=info,
    )


def _tilt_angles(
    tilt_range_deg: tuple[float, float], tilt_step_deg: float
) -> tuple[float, float, np.ndarray]:
    """Check the tilt step and range; the first and last angle and all the angles (degrees)."""
    if tilt_step_deg <= 0:
        raise InputError(f"tilt step must be positive, got {tilt_step_deg}")
    lo, hi = float(tilt_range_deg[0]), float(tilt_range_deg[1])
    if not -90 < lo < hi < 90:
        raise InputError(f"tilt range must satisfy -90 < first < last < 90, got ({lo}, {hi})")
    angles = np.arange(lo, hi + 1e-6 * tilt_step_deg, tilt_step_deg, dtype=np.float64)
    if len(angles) < 3:
        raise InputError(f"{len(angles)} tilts; give a range and step with at least 3 tilts")
    return lo, hi, angles


def _volumes(
    volume: np.ndarray | None,
    phantom: str,
    shape: tuple[int, int, int],
    oversample: int,
    pixel_size_A: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], int]:
    """The fine (projected) volume, the truth at output voxels, the output shape, oversample."""
    from emkit.ops import bin_volume

    if volume is not None:
        fine = np.asarray(volume, dtype=np.float32)
        if fine.ndim != 3:
            raise InputError(f"volume must be 3D (z, y, x), got shape {fine.shape}")
        return fine, fine, (fine.shape[0], fine.shape[1], fine.shape[2]), 1
    if oversample < 1:
        raise InputError(f"oversample must be >= 1, got {oversample}")
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    fine_shape = (shape[0] * oversample, shape[1] * oversample, shape[2] * oversample)
    fine = _phantom(
        phantom,
        fine_shape,
        seed=int(rng.integers(2**31)),
        pixel_size_A=pixel_size_A / oversample,
    )
    truth = bin_volume(fine, oversample) if oversample > 1 else fine
    return fine, truth, shape, oversample


def _project_and_shift(
    fine: np.ndarray,
    angles: np.ndarray,
    shifts: np.ndarray,
    image_shape: tuple[int, int],
    max_shift_px: float,
    tilt_axis_angle_deg: float,
    oversample: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Project on a wider fine detector, misalign, bin: the raw and the clean (aligned) stack."""
    from emkit.ops import SingleAxisProjector, bin_image

    ny, nx = image_shape
    # A wider detector, so that content shifted into the field of view is real projection.
    margin = int(np.ceil(max_shift_px + 0.75 * abs(tilt_axis_angle_deg) / 45 * max(ny, nx))) + 2
    nd = (nx + 2 * margin) * oversample
    projector = SingleAxisProjector(fine.shape, angles, n_detector=nd, device="cpu")
    fine_proj = np.asarray(projector.forward(fine), dtype=np.float32)
    center = np.array([(fine_proj.shape[1] - 1) / 2.0, (nd - 1) / 2.0])
    raw_fine = np.empty_like(fine_proj)
    for i in range(len(angles)):
        raw_fine[i] = _raw_from_aligned(
            fine_proj[i], shifts[i] * oversample, tilt_axis_angle_deg, center
        )
    # Fine line integrals are in fine voxels: divide to get output-pixel units.
    raw = bin_image(raw_fine, oversample) / np.float32(oversample)
    clean = bin_image(fine_proj, oversample) / np.float32(oversample)
    raw = np.ascontiguousarray(raw[:, :, margin : margin + nx], dtype=np.float32)
    clean = np.ascontiguousarray(clean[:, :, margin : margin + nx], dtype=np.float32)
    return raw, clean


def _add_noise(
    raw: np.ndarray, snr: float, noise: str, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Gaussian or shot noise at signal-to-noise ratio ``snr``: the noisy stack and its sigma."""
    signal_var = float(raw.var())
    if noise == "gaussian":
        sigma = float(np.sqrt(signal_var / snr))
        return raw + rng.normal(0.0, sigma, raw.shape).astype(np.float32), sigma
    p_max = float(np.abs(raw).max()) or 1.0
    attenuation = np.exp(-raw.astype(np.float64) / p_max)
    # Var of -p_max ln(counts/dose) ~ p_max^2 / (dose * attenuation).
    dose = p_max**2 * float(np.mean(1.0 / attenuation)) * snr / max(signal_var, 1e-30)
    counts = np.maximum(rng.poisson(dose * attenuation), 1)
    noisy = -p_max * np.log(counts / dose)
    sigma = float(np.sqrt(np.mean(p_max**2 / (dose * attenuation))))
    return noisy.astype(np.float32), sigma
