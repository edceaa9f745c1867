"""Chaining (the baseline): each section registered to its neighbour towards a reference,
the fields composed outward from it. Errors add up along the chain; ``register_stack``
uses a global relaxation instead and keeps this for comparison (``relax="chain"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emkit.errors import EmkitError, InputError
from emkit.register._field import compose_fields, field_validity, mask_at, warp_image
from emkit.register._pair import register_pair


def neighbour_pairs(n: int, reference: int) -> list[tuple[int, int]]:
    """``(moving, fixed)`` index pairs: each section with its neighbour towards the reference."""
    pairs = [(i, i + 1) for i in range(reference - 1, -1, -1)]
    pairs += [(i, i - 1) for i in range(reference + 1, n)]
    return pairs


def _pair_job(
    job: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One neighbour registration (module level so Dask can send it to a worker).

    Returns the field from the fixed neighbour's pixels to the moving section, where the
    moving section has data, where the field is usable for chaining, and the info.
    """
    try:
        if job["fixed_mask"] is not None and job["mask"] is None:
            # Only the neighbour is damaged: its defect must block the paths, so it is
            # registered as the moving image and that model's forward map is the field.
            result = register_pair(
                job["moving"],
                job["fixed"],
                defect_mask=job["fixed_mask"],
                forward=True,
                **job["options"],
            )
            assert result.forward_field is not None
            shape = result.forward_field.shape[1:]
            inside = field_validity(result.forward_field, None, (shape[0], shape[1]))
            return result.forward_field, inside, inside, dict(result.info, reversed=True)
        result = register_pair(
            job["fixed"],
            job["moving"],
            defect_mask=job["mask"],
            fixed_mask=job["fixed_mask"],
            **job["options"],
        )
    except EmkitError as error:
        # Name the section: the user must know which pair of the stack failed.
        raise type(error)(f"{job['name']}: {error}") from None
    # The warped image stays in the worker: the stack is warped once, after chaining.
    return result.field, result.valid, result.defined, dict(result.info, reversed=False)


def chain_stack(
    images: np.ndarray | Sequence[np.ndarray],
    *,
    defect_masks: np.ndarray | Sequence[np.ndarray | None] | None = None,
    reference: int | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    progress: bool = False,
    fill_value: float = 0.0,
    section_names: Sequence[str] | None = None,
    **pair_options: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list[dict[str, Any]]]:
    """Register every section to its neighbour and chain the fields to a reference.

    Each section ``i`` is registered to its neighbour towards the reference (``i + 1``
    below it, ``i - 1`` above it) with :func:`register_pair`; the pairs are independent
    and run in parallel (:func:`emkit.parallel.map_inputs`). When only the neighbour is
    damaged, the pair is registered the other way round (the damaged section as the
    moving image, so its defect blocks the path distances) and that model's forward map
    is used. The fields are then composed outward from the reference, so every section
    lands in the reference's frame. Through a neighbour's defect band the chain uses the
    affine of the nearest tissue (an approximation: the band has no counterpart).

    Parameters
    ----------
    images : ndarray, shape (n, H, W), or sequence of n (H, W) arrays
        The sections in order.
    defect_masks : same shape as ``images``, or sequence with None entries, optional
        Nonzero where section ``i`` is damaged.
    reference : int, optional
        Index of the section that stays fixed (default: the middle one, ``n // 2``).
    scheduler, n_workers
        Where the pairs run: see :func:`emkit.parallel.map_inputs` (None: a local cluster
        of processes; ``"sync"``: in this process; an address: a running scheduler).
    progress : bool
        Progress bar over the pairs.
    fill_value : float
        Value of aligned pixels without data.
    section_names : sequence of str, optional
        Names (e.g. file names) used in error messages; default ``"section i"``.
    **pair_options
        Passed to :func:`register_pair` (``method``, ``n_clusters``, ``seed``, ...).

    Returns
    -------
    aligned, fields, valid, reference, pair_info
        As the attributes of :class:`StackRegistration`.

    Raises
    ------
    ShapeError, MismatchError
        Fewer than 2 sections, sections of different sizes, masks not matching.
    InputError
        A bad ``reference``; any error of :func:`register_pair` (the pair is named).
    """
    from emkit.parallel import map_inputs
    from emkit.register._stack_source import as_source

    source = as_source(images, defect_masks, section_names)  # the same checks as global
    n = source.n
    sections = [source.section(i) for i in range(n)]
    masks = [source.mask(i) for i in range(n)]
    names = source.names
    shape = source.shape
    ref = n // 2 if reference is None else int(reference)
    if not 0 <= ref < n:
        raise InputError(f"reference section {ref} out of range; give 0..{n - 1}")
    pairs = neighbour_pairs(n, ref)
    jobs = [
        {
            "fixed": sections[fixed],
            "moving": sections[moving],
            "mask": masks[moving],
            "fixed_mask": masks[fixed],
            "options": dict(pair_options, fill_value=fill_value),
            "name": (f"{names[moving]} (registered to {names[fixed]})"),
        }
        for moving, fixed in pairs
    ]
    results = map_inputs(
        _pair_job,
        jobs,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
        desc="section pairs",
    )
    h, w = shape
    fields = np.zeros((n, 2, h, w), dtype=np.float32)
    valid = np.zeros((n, h, w), dtype=bool)
    valid[ref] = True
    # Where the chained field is trustworthy, whether or not that section has tissue
    # there: a fold in one section must not blank the region in every section beyond it.
    defined = np.zeros((n, h, w), dtype=bool)
    defined[ref] = True
    info: list[dict[str, Any]] = [{} for _ in range(n)]
    by_moving = {moving: (fixed, res) for (moving, fixed), res in zip(pairs, results)}
    # Chain outward from the reference: neighbour j is always done before section i.
    for moving, fixed in pairs:
        _, (pair_field, pair_valid, pair_defined, pair_info) = by_moving[moving]
        fields[moving] = compose_fields(fields[fixed], pair_field)
        valid[moving] = defined[fixed] & mask_at(pair_valid, fields[fixed])
        defined[moving] = defined[fixed] & mask_at(pair_defined, fields[fixed])
        info[moving] = dict(pair_info, neighbour=fixed)
    aligned = np.empty((n, h, w), dtype=sections[0].dtype)
    for i in range(n):
        aligned[i] = warp_image(sections[i], fields[i], valid=valid[i], fill_value=fill_value)
    return aligned, fields, valid, ref, info
