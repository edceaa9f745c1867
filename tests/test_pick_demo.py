"""The pick part of ``emkit demo``: the pipeline in emkit.pick, the figures from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")


def test_pick_demo_scores_the_shipped_model_and_template_matching(tmp_path: Path) -> None:
    from emkit.cli.pick import run_demo
    from emkit.pick import shipped_model_folder

    if shipped_model_folder() is None:
        pytest.skip("no shipped pick model in this emkit")
    numbers = run_demo(tmp_path / "demo", seed=0, progress=False)
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"simulated", "network_particles.star", "network_particles.tsv",
            "network_instances.mrc", "scores_emkit_pick.csv", "scores_template_matching.csv",
            "network_picks.png", "scores.png"} <= names
    assert numbers["particles_true"] > 100
    last = (tmp_path / "demo" / "scores_emkit_pick.csv").read_text().splitlines()[-1]
    assert last.startswith("all,")
    # measured: 0.731 for the shipped model, 0.252 for template matching (40 rotations)
    assert numbers["f1_emkit_pick"] > 0.6
    assert numbers["f1_template_matching"] < 0.4
