"""Reading tiles (whole or a region), with a small cache for the chunked render."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from emkit.atlas._positions import Tile


def read_tile(tile: Tile) -> np.ndarray:
    """The tile's pixels, ``(H, W)`` in the file's dtype."""
    from emkit.io import read_volume

    data = read_volume(tile.path, mmap=True).data
    if tile.section is not None:
        data = data[tile.section]
    return np.ascontiguousarray(data)


class TileCache:
    """At most ``capacity`` decoded tiles, least recently used dropped first (thread safe)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._tiles: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index: int, tile: Tile) -> np.ndarray:
        with self._lock:
            if index in self._tiles:
                self._tiles.move_to_end(index)
                return self._tiles[index]
        data = read_tile(tile)
        with self._lock:
            self._tiles[index] = data
            self._tiles.move_to_end(index)
            while len(self._tiles) > self.capacity:
                self._tiles.popitem(last=False)
        return data

    def drop(self, keep: set[int]) -> None:
        """Forget every tile not in ``keep``."""
        with self._lock:
            for index in [i for i in self._tiles if i not in keep]:
                del self._tiles[index]
