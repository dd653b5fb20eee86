"""Grids that let the ray caster cross empty space in jumps and shade corners, kept in step with the blocks.

Two sets, stacked on the first axis: set 0 counts every block, set 1 every block but water
(a ray that has entered water looks for what lies under it). For each set g:

- `occupancy4[g, x >> 2, y >> 2, z >> 2]` (and `occupancy16[g, x >> 4, ...]`): whether the
  cube of 4 (16) blocks a side holds any block;
- `heights[g, k, x >> 2, z >> 2]`: one above the highest block of the aligned column
  `4 << k` blocks wide that holds (x, z), for k < N_LEVELS. A ray above that height goes on
  unhindered until it leaves the column or comes down to that height.

And `occluders[x + 1, y + 1, z + 1]`: whether a block darkens the face corners next to it
(ambient occlusion), padded by one block all round so the renderer needs no bounds checks.
"""

import numpy as np

N_LEVELS = 5
"""Column widths of `heights`: 4, 8, 16, 32, 64 blocks."""


class Accel:
    """The grids over `blocks[x, y, z]` (shared, not copied): `mark` each changed block, `sync` before rendering."""

    def __init__(self, blocks: np.ndarray, water_id: int, occluding: np.ndarray):
        X, Y, Z = blocks.shape
        if X % 64 or Z % 64 or Y % 16:
            raise ValueError(f"a world of {blocks.shape} blocks must be a multiple of 64 across and of 16 high")
        self.blocks = blocks
        self.water_id = water_id
        self.occluding = occluding
        """Per block id, whether it occludes (see module doc)."""
        self.occluders = np.zeros((X + 2, Y + 2, Z + 2), np.uint8)
        self.occluders[1:-1, 1:-1, 1:-1] = occluding[blocks]
        self.occupancy4 = np.zeros((2, X // 4, Y // 4, Z // 4), np.uint8)
        self.occupancy16 = np.zeros((2, X // 16, Y // 16, Z // 16), np.uint8)
        self.base = np.zeros((2, X // 4, Z // 4), np.int64)
        """One above the highest block of each 4x4 column."""
        self.heights = np.zeros((2, N_LEVELS, X // 4, Z // 4), np.int64)
        self._dirty: set[tuple[int, int, int]] = set()
        for g, mask in enumerate(self._masks(blocks)):
            self.occupancy4[g] = mask.reshape(X // 4, 4, Y // 4, 4, Z // 4, 4).any(axis=(1, 3, 5))
            columns = mask.reshape(X // 4, 4, Y, Z // 4, 4).any(axis=(1, 4))  # (X/4, Y, Z/4)
            top = Y - np.argmax(columns[:, ::-1, :], axis=1)
            self.base[g] = np.where(columns.any(axis=1), top, 0)
        self._coarse()

    def _masks(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        anything = blocks != 0
        return anything, anything & (blocks != self.water_id)

    def mark(self, x: int, y: int, z: int) -> None:
        """Note that block (x, y, z) changed."""
        self._dirty.add((x >> 2, y >> 2, z >> 2))

    def sync(self) -> None:
        """Bring the grids up to date with every block marked since the last sync."""
        if not self._dirty:
            return
        for x4, y4, z4 in self._dirty:
            x, y, z = 4 * x4, 4 * y4, 4 * z4
            cube = self.blocks[x : x + 4, y : y + 4, z : z + 4]
            self.occluders[x + 1 : x + 5, y + 1 : y + 5, z + 1 : z + 5] = self.occluding[cube]
            for g, mask in enumerate(self._masks(cube)):
                self.occupancy4[g, x4, y4, z4] = mask.any()
        for x4, z4 in {(x4, z4) for x4, _, z4 in self._dirty}:
            column = self.blocks[4 * x4 : 4 * x4 + 4, :, 4 * z4 : 4 * z4 + 4]
            for g, mask in enumerate(self._masks(column)):
                filled = np.flatnonzero(mask.any(axis=(0, 2)))
                self.base[g, x4, z4] = filled[-1] + 1 if len(filled) else 0
        self._dirty.clear()
        self._coarse()

    def _coarse(self) -> None:
        """The 16-cubes and the wider columns, from the 4-cubes and the 4-columns."""
        _, X4, Y4, Z4 = self.occupancy4.shape
        self.occupancy16[...] = self.occupancy4.reshape(2, X4 // 4, 4, Y4 // 4, 4, Z4 // 4, 4).any(axis=(2, 4, 6))
        for k in range(N_LEVELS):
            f = 1 << k
            widest = self.base.reshape(2, X4 // f, f, Z4 // f, f).max(axis=(2, 4))
            self.heights[:, k] = widest.repeat(f, axis=1).repeat(f, axis=2)

    @property
    def top_y(self) -> int:
        """One above the highest block of the world."""
        return int(self.heights[0, -1].max())
