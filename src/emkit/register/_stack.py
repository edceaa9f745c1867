"""Align a stack of serial sections: pairwise registration, then one global relaxation.

1. **Pairs** (in parallel, :func:`emkit.parallel.map_inputs`): each undamaged section is
   registered (:func:`register_pair`, elastic refinement included) to the next undamaged
   section and to the one after, so a damaged section is skipped by a pair that joins
   its two neighbours; each damaged section is registered to its anchor (its neighbour
   towards the nearest undamaged section, itself anchored if damaged) with its own defect
   blocking paths and patches. Each pair returns
   its field on a coarse grid of nodes (and, for an anchor pair, at full resolution).
2. **Relaxation** (:func:`._stack_relax.relax_stack`): one least-squares solve of every
   undamaged section's displacement from all pair equations at once, so errors do not
   add up along the stack as they do when fields are chained.
3. **Rendering**, one section at a time: an undamaged section's field is its node
   displacement interpolated to pixels; a damaged section's is its anchor's composed
   with the anchor pair's full field (so the jump at the fold stays sharp). Each aligned
   section goes to ``sink`` (streaming, memory bounded whatever the number of sections)
   or into the returned arrays.

With ``work_dir`` every pair result is kept on disk as it arrives, so a run that was
interrupted resumes where it stopped (pairs already there are read, not recomputed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emkit.errors import EmkitError, InputError
from emkit.register._field import compose_fields, field_validity, mask_at, warp_image
from emkit.register._stack_relax import Grid, PairGrid, anchor_order, plan_pairs, relax_stack
from emkit.register._stack_source import StackSource, as_source

__all__ = ["StackRegistration", "register_stack"]

Sink = Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]


@dataclass
class StackRegistration:
    """The result of :func:`register_stack`.

    Attributes
    ----------
    aligned : ndarray, shape (n, H, W), or None
        Every section resampled into the common frame, input dtype; ``fill_value`` where
        a section has no data. None when the sections went to a ``sink``.
    fields : ndarray of float32, shape (n, 2, H, W), or None
        For section ``i``: ``(dy, dx)`` from each common-frame pixel to its position in
        section ``i``. None with a ``sink``.
    valid : ndarray of bool, shape (n, H, W), or None
        Common-frame pixels where section ``i`` has data. None with a ``sink``.
    reference : int or None
        The section held fixed, or None: the common frame is the stack's average.
    pair_info : list of dict
        Per section: how it was registered (its pairs, residuals, the info of its pair
        registrations, abbreviated).
    residual_px : ndarray of float, shape (n,)
        Per section, the RMS misfit of the global solution to the pair fields that
        touch it (NaN for a damaged section, which follows its anchor).
    pairs : list of dict
        Every registered pair: ``s``, ``t``, ``kind`` ("link" or "anchor"),
        ``residual_px`` (links).
    """

    aligned: np.ndarray | None
    fields: np.ndarray | None
    valid: np.ndarray | None
    reference: int | None
    pair_info: list[dict[str, Any]] = field(default_factory=list)
    residual_px: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pairs: list[dict[str, Any]] = field(default_factory=list)


def _short(info: dict[str, Any]) -> dict[str, Any]:
    keep = ("n_matches", "n_clusters", "n_inliers_global", "valid_fraction", "reversed")
    out = {k: info[k] for k in keep if k in info}
    if "elastic" in info:
        out["elastic_correction_mean_px"] = info["elastic"].get("correction_mean_px")
    return out


def _pair_job(job: dict[str, Any]) -> dict[str, Any]:
    """Register section ``t`` onto section ``s`` (module level: Dask sends it to a worker).

    Reads both sections from the source, so only indices travel. Returns the field from
    ``s`` to ``t`` at the grid nodes and, for an anchor pair, at full resolution.
    """
    from emkit.register._pair import register_pair

    cache = job["cache"]
    if cache is not None and Path(cache).is_file():
        cached = _read_cached(Path(cache))
        if not job["full"] or "field" in cached:
            return _light(cached, cache)
    source: StackSource = job["source"]
    s, t = job["s"], job["t"]
    try:
        result = register_pair(
            source.section(s),
            source.section(t),
            defect_mask=source.mask(t),
            fixed_mask=source.mask(s),
            **job["options"],
        )
    except EmkitError as error:
        # Name the sections: the user must know which pair of the stack failed.
        names = source.names
        raise type(error)(f"{names[t]} (registered to {names[s]}): {error}") from None
    grid: Grid = job["grid"]
    out: dict[str, Any] = {
        "s": s,
        "t": t,
        "field_grid": grid.sample(result.field).astype(np.float32),
        # Trusted where the model is defined, also where it points outside the next
        # section (border nodes of drifting sections: the field is smooth there); not
        # where it points into the moving section's defect.
        "valid_grid": grid.sample(_trusted(result, source.mask(t))).astype(bool),
        "info": _short(result.info),
    }
    if job["full"]:
        out["field"] = result.field
        out["valid"] = result.valid
    if cache is not None:
        _write_cached(Path(cache), out)
        return _light(out, cache)
    return out


def _trusted(result: Any, moving_mask: np.ndarray | None) -> np.ndarray:
    """Where a pair's field can be used in the relaxation: defined, not into the defect."""
    from emkit.register._pathdist import grow

    trusted = np.asarray(result.defined, bool).copy()
    if moving_mask is not None and moving_mask.any():
        trusted &= ~mask_at(grow(moving_mask, 2), result.field)
    return trusted


def _light(out: dict[str, Any], cache: str) -> dict[str, Any]:
    """A pair's result without its full-resolution field when the work folder holds it:
    the main process reads it when it renders that section (memory does not grow with
    the number of damaged sections)."""
    if "field" not in out:
        return out
    light = {k: v for k, v in out.items() if k not in ("field", "valid")}
    light["cache"] = cache
    return light


def _full_field(pair: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The full-resolution field and validity of an anchor pair (from memory or its file)."""
    if "field" in pair:
        return np.asarray(pair["field"], np.float32), np.asarray(pair["valid"], bool)
    cached = _read_cached(Path(pair["cache"]))
    return np.asarray(cached["field"], np.float32), np.asarray(cached["valid"], bool)


def _write_cached(path: Path, out: dict[str, Any]) -> None:
    """Keep a pair's result at once, not at the end of the run: a resume reads it (atomic,
    committed immediately like a checkpoint, also inside a CLI run)."""
    from emkit.io import atomic_output

    arrays = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    meta = json.dumps({"s": out["s"], "t": out["t"], "info": out["info"]})
    with atomic_output(path, immediate=True) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, meta=np.array(meta), **arrays)


def _read_cached(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        out: dict[str, Any] = {k: data[k] for k in data.files if k != "meta"}
    out.update(meta)
    return out


def _prepare_work_dir(work_dir: Path, source: StackSource, settings: dict[str, Any]) -> Path:
    """Create (or check, to resume) the folder that keeps the pair results."""
    from emkit import __version__

    fingerprint = {
        "n_sections": source.n,
        "shape": list(source.shape),
        "names": [Path(n).name for n in source.names],
        "contents": source.identity(),
        "settings": settings,
        "version": __version__,
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "pairs").mkdir(exist_ok=True)
    stamp = work_dir / "stack.json"
    if stamp.is_file():
        previous = json.loads(stamp.read_text())
        if previous != json.loads(json.dumps(fingerprint)):
            raise InputError(
                f"{work_dir}: holds the pairs of another stack or of other settings "
                f"({_difference(previous, fingerprint)}); give a new --work-dir or remove it"
            )
    else:
        stamp.write_text(json.dumps(fingerprint, indent=1))
    return work_dir / "pairs"


def _difference(previous: dict[str, Any], now: dict[str, Any]) -> str:
    for key in ("n_sections", "shape", "names", "contents", "settings", "version"):
        if previous.get(key) != json.loads(json.dumps(now[key])):
            return f"its {key.replace('_', ' ')} differ"
    return "it differs"


def _run_pairs(
    source: StackSource,
    grid: Grid,
    plan: list[tuple[int, int, bool]],
    options: dict[str, Any],
    pair_dir: Path | None,
    *,
    scheduler: Any,
    n_workers: int | None,
    progress: bool,
) -> list[dict[str, Any]]:
    from emkit.parallel import map_inputs

    def for_pair(s: int, t: int) -> StackSource:
        # Sections in memory travel with the job: send only the two it needs.
        only = getattr(source, "only", None)
        return only([s, t]) if only is not None else source

    jobs = [
        {
            "source": for_pair(s, t),
            "s": s,
            "t": t,
            "full": full,
            "grid": grid,
            "options": options,
            "cache": None if pair_dir is None else str(pair_dir / f"pair_{s:05d}_{t:05d}.npz"),
        }
        for s, t, full in plan
    ]
    return map_inputs(
        _pair_job,
        jobs,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
        desc="section pairs",
    )


def _render(
    source: StackSource,
    index: int,
    field_i: np.ndarray,
    valid_i: np.ndarray,
    fill_value: float,
) -> np.ndarray:
    return warp_image(source.section(index), field_i, valid=valid_i, fill_value=fill_value)


def register_stack(
    images: Any,
    *,
    defect_masks: np.ndarray | Sequence[np.ndarray | None] | None = None,
    reference: int | None = None,
    relax: Literal["global", "chain"] = "global",
    links: int = 2,
    spacing_px: int | None = None,
    prior: float = 1e-3,
    scheduler: Any = None,
    n_workers: int | None = None,
    progress: bool = False,
    fill_value: float = 0.0,
    section_names: Sequence[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    sink: Sink | None = None,
    **pair_options: Any,
) -> StackRegistration:
    """Align a stack of serial sections into one common frame.

    Parameters
    ----------
    images : ndarray (n, H, W), sequence of (H, W) arrays, or a StackSource
        The sections in order (a source reads them lazily, one at a time).
    defect_masks : same shape as ``images``, or sequence with None entries, optional
        Nonzero where section ``i`` is damaged (ignored when ``images`` is a source,
        which carries its own masks).
    reference : int, optional
        A section held fixed: the common frame is that section's. Default: none, the
        common frame is the stack's average (the deformation no pair can see, shared by
        all sections, is set to zero). ``relax="chain"`` defaults to the middle section.
    relax : {"global", "chain"}
        ``"global"`` (default): one least-squares relaxation of all pairs (each section
        with its next ``links`` undamaged ones). ``"chain"``: each section registered
        to its neighbour towards the reference and the fields composed (errors add up
        with the distance to the reference; kept as the baseline).
    links : int
        Undamaged sections after each one that it is registered to (2: the next one and
        the one after).
    spacing_px : int, optional
        Node spacing of the global solution (default: about 64 nodes across, 8-64 px).
    prior : float
        Weight, relative to one pair equation, of the pull of every section's
        displacement towards zero (the common frame).
    scheduler, n_workers
        Where the pairs run: see :func:`emkit.parallel.map_inputs`.
    progress : bool
        Progress bar over the pairs.
    fill_value : float
        Value of aligned pixels without data.
    section_names : sequence of str, optional
        Names (file names) used in error messages.
    work_dir : path, optional
        Keep every pair's result here as it arrives; a later call with the same folder,
        stack and settings reads them instead of registering again (resume).
    sink : callable, optional
        ``sink(i, aligned, field, valid)`` receives each section as soon as it is
        rendered (global mode); the result then holds no arrays.
    **pair_options
        Passed to :func:`register_pair` (``method``, ``refine``, ``seed`` ...).

    Returns
    -------
    StackRegistration

    Raises
    ------
    ShapeError, MismatchError
        Fewer than 2 sections, sections of different sizes, masks not matching.
    InputError
        A bad ``reference``; a ``work_dir`` of another stack; any error of
        :func:`register_pair` (the pair is named).
    """
    source = as_source(images, defect_masks, section_names)
    n = source.n
    if reference is not None and not 0 <= int(reference) < n:
        raise InputError(f"reference section {reference} out of range; give 0..{n - 1}")
    if relax not in ("global", "chain"):
        raise InputError(f"unknown relaxation {relax!r}; use 'global' or 'chain'")
    if relax == "chain":
        return _chain(source, reference, scheduler, n_workers, progress, fill_value, pair_options)
    h, w = source.shape
    spacing = int(spacing_px or np.clip(round(max(h, w) / 64), 8, 64))
    grid = Grid(spacing, (h, w))
    damaged = source.damaged()
    links_pairs, anchors = plan_pairs(damaged, links=max(1, int(links)))
    if reference is not None and int(reference) in anchors:
        raise InputError(f"reference section {reference} is damaged; give an undamaged one or none")
    plan = [(s, t, False) for s, t in links_pairs] + [
        (a, d, True) for d, a in sorted(anchors.items())
    ]
    settings = {"relax": relax, "links": links, "spacing_px": spacing, "pair": pair_options}
    pair_dir = None
    if work_dir is not None:
        pair_dir = _prepare_work_dir(
            Path(work_dir), source, json.loads(json.dumps(settings, default=str))
        )
    options = dict(pair_options, fill_value=fill_value)
    results = _run_pairs(
        source,
        grid,
        plan,
        options,
        pair_dir,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
    )
    return _solve_and_render(
        source,
        grid,
        results,
        links_pairs,
        anchors,
        reference=None if reference is None else int(reference),
        fill_value=fill_value,
        sink=sink,
        prior=prior,
    )


def _solve_and_render(
    source: StackSource,
    grid: Grid,
    results: list[dict[str, Any]],
    links_pairs: list[tuple[int, int]],
    anchors: dict[int, int],
    *,
    reference: int | None,
    fill_value: float,
    sink: Sink | None,
    prior: float,
) -> StackRegistration:
    n = source.n
    h, w = source.shape
    by_pair = {(int(r["s"]), int(r["t"])): r for r in results}
    good = sorted({i for i in range(n) if i not in anchors})
    link_grids = [
        PairGrid(s, t, by_pair[(s, t)]["field_grid"], by_pair[(s, t)]["valid_grid"])
        for s, t in links_pairs
    ]
    nodes, residual = relax_stack(grid, good, link_grids, reference=reference, prior=prior)
    residual_px = np.full(n, np.nan)
    touching: dict[int, list[float]] = {i: [] for i in good}
    for (s, t), r in zip(links_pairs, residual):
        touching[s].append(r)
        touching[t].append(r)
    for i in good:
        if touching[i]:
            residual_px[i] = float(np.sqrt(np.mean(np.square(touching[i]))))
    collect = sink is None
    aligned = np.empty((n, h, w), source.dtype) if collect else None
    fields = np.empty((n, 2, h, w), np.float32) if collect else None
    valid = np.empty((n, h, w), bool) if collect else None
    info: dict[int, dict[str, Any]] = {}
    # Undamaged sections first, then the damaged ones, each after its anchor; a damaged
    # section's full field is kept while another damaged section is anchored to it.
    needed = set(anchors.values())
    kept: dict[int, np.ndarray] = {}
    for i in good + anchor_order(anchors):
        if i in anchors:
            a = anchors[i]
            outer = kept[a] if a in kept else grid.upsample(nodes[a])
            field_i, valid_i = _anchored_field(source, outer, by_pair[(a, i)], i)
            info[i] = {"anchor": a, **by_pair[(a, i)]["info"]}
        else:
            field_i = grid.upsample(nodes[i])
            valid_i = field_validity(field_i, source.mask(i), (h, w))
            info[i] = {
                "links": [t if s == i else s for s, t in links_pairs if i in (s, t)],
                "residual_px": None
                if np.isnan(residual_px[i])
                else round(float(residual_px[i]), 4),
            }
        if i in needed and i in anchors:
            kept[i] = field_i
        aligned_i = _render(source, i, field_i, valid_i, fill_value)
        if collect:
            assert aligned is not None and fields is not None and valid is not None
            aligned[i], fields[i], valid[i] = aligned_i, field_i, valid_i
        else:
            assert sink is not None
            sink(i, aligned_i, field_i, valid_i)
    pairs = [
        {"s": s, "t": t, "kind": "link", "residual_px": round(float(r), 4)}
        for (s, t), r in zip(links_pairs, residual)
    ] + [{"s": a, "t": d, "kind": "anchor"} for d, a in sorted(anchors.items())]
    per_section = [info[i] for i in range(n)]
    return StackRegistration(aligned, fields, valid, reference, per_section, residual_px, pairs)


def _anchored_field(
    source: StackSource, outer: np.ndarray, pair: dict[str, Any], index: int
) -> tuple[np.ndarray, np.ndarray]:
    """A damaged section's field: its anchor's (``outer``), composed with the anchor pair's
    full field (registered with the anchor as the fixed image, so the damaged section's
    defect blocks paths and patches and the field's jump at the fold is sharp)."""
    h, w = source.shape
    pair_field, pair_valid = _full_field(pair)
    composed = compose_fields(outer, pair_field)
    ok = field_validity(outer, None, (h, w)) & mask_at(pair_valid, outer)
    ok &= field_validity(composed, source.mask(index), (h, w))
    return composed, ok


def _chain(
    source: StackSource,
    reference: int | None,
    scheduler: Any,
    n_workers: int | None,
    progress: bool,
    fill_value: float,
    pair_options: dict[str, Any],
) -> StackRegistration:
    from emkit.register._stack_chain import chain_stack

    sections = [source.section(i) for i in range(source.n)]
    masks = [source.mask(i) for i in range(source.n)]
    aligned, fields, valid, ref, info = chain_stack(
        sections,
        defect_masks=masks,
        reference=reference,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
        fill_value=fill_value,
        section_names=source.names,
        **pair_options,
    )
    return StackRegistration(aligned, fields, valid, ref, info, np.full(source.n, np.nan), [])
