"""Draw docs/figures/tilt_axis_convention.png: emkit's tilt-axis angle, computed, not sketched.

A raw image holds a bright line along a tilt axis at +30 degrees (from the image +y axis
towards -x); ``emkit.tomo.transform_images(..., tilt_axis_angle_deg=30)`` turns it onto y.
Both panels are drawn with y upwards (row 0 at the bottom), as IMOD displays images.

    python docs/figures/tilt_axis_convention.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from emkit.tomo import transform_images

ANGLE_DEG = 30.0
N = 129


def raw_image() -> np.ndarray:
    """A disc with a bright line through the centre along the tilt axis."""
    y, x = np.mgrid[:N, :N] - (N - 1) / 2
    t = np.radians(ANGLE_DEG)
    along = -x * np.sin(t) + y * np.cos(t)  # coordinate along the axis direction
    across = x * np.cos(t) + y * np.sin(t)
    image = 0.3 * (np.hypot(x, y) < 55)
    image += np.exp(-0.5 * (across / 1.5) ** 2) * (np.abs(along) < 50)
    image += 0.8 * (np.hypot(x - 20, y + 25) < 6)  # a blob, to show the turn
    return image[None].astype(np.float32)


def main() -> None:
    raw = raw_image()
    aligned = transform_images(raw, np.zeros((1, 2)), tilt_axis_angle_deg=ANGLE_DEG, fill=0.0)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    c = (N - 1) / 2
    for ax, image, title in ((axes[0], raw[0], f"raw image: tilt axis at +{ANGLE_DEG:g} deg"),
                             (axes[1], aligned[0], "after transform_images: axis along y")):
        ax.imshow(image, origin="lower", cmap="gray")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x (columns) ->")
        ax.set_ylabel("y (rows) ->")
        ax.plot([c, c], [c, c + 58], color="tab:orange", lw=1, ls="--")
    t = np.radians(ANGLE_DEG)
    axes[0].annotate("", xy=(c - 58 * np.sin(t), c + 58 * np.cos(t)), xytext=(c, c),
                     arrowprops={"arrowstyle": "->", "color": "tab:red"})
    arc = np.radians(np.linspace(90, 90 + ANGLE_DEG, 30))
    axes[0].plot(c + 30 * np.cos(arc), c + 30 * np.sin(arc), color="tab:red")
    axes[0].text(c - 16, c + 36, f"+{ANGLE_DEG:g}°", color="tab:red")
    axes[0].text(c + 3, c + 50, "+y", color="tab:orange")
    fig.suptitle("--tilt-axis / tilt_axis_angle_deg: from +y towards -x "
                 "(counter-clockwise, y drawn upwards)", fontsize=10)
    fig.tight_layout()
    out = Path(__file__).with_suffix(".png")
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
