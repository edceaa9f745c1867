"""emkit: electron-microscopy images to 3D results.

Five workflows share one core: ``tomo`` (tilt-series alignment and reconstruction),
``segment``, ``spa``, ``pick`` and ``register`` (serial-section registration). Importing
``emkit`` does nothing but define the version; import the subpackage you need
(``emkit.io``, ``emkit.ops``, ``emkit.tomo``, ...).
"""

__version__ = "0.1.0"
