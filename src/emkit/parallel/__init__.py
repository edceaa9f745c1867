"""emkit.parallel: run work on many inputs or many chunks with Dask.

Two patterns cover the workflows: a fan-out of independent jobs (one per section pair,
per tilt series, ...) with :func:`map_inputs` (or :func:`iter_inputs`, which hands the
results over one at a time, in order), and a chunked filter over a volume too big
for memory (Zarr in, Zarr or ndarray out) with :func:`chunked_map_overlap`.
:func:`dask_client` opens the cluster both use: a local one by default, or a running
scheduler by address (:func:`shared_scheduler` keeps one for several fan-outs of a run);
:func:`limit_threads` sets the threads a task may use in every
library. Dask is imported only when these functions run.
"""

from emkit.parallel._fanout import (
    dask_client,
    default_n_workers,
    iter_inputs,
    map_inputs,
    runs_in_process,
    shared_scheduler,
)
from emkit.parallel._overlap import chunked_map_overlap
from emkit.parallel._threads import limit_threads

__all__ = [
    "chunked_map_overlap",
    "dask_client",
    "default_n_workers",
    "limit_threads",
    "iter_inputs",
    "map_inputs",
    "runs_in_process",
    "shared_scheduler",
]
