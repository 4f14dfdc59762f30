"""A fully connected wiring for the LTC cell that needs no ncps (ncps is the optional `ncps` extra).

`DenseWiring(units, output_dim)` draws the same synapse polarities, in the same order and from the same
seeded generator, as `ncps.wirings.FullyConnected(units, output_dim)` (ncps 1.0.1, Apache-2.0), so an LTC
built from an int starts from the same initial reversal potentials with or without ncps installed.
It has the attributes and methods the cells read from a wiring (the ncps `Wiring` interface subset).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

NCPS_HINT = "pip install 'liquid_control[ncps]'"


def is_wiring(units: Any) -> bool:
    """Whether `units` is a wiring object (ncps's or ours) rather than a neuron count."""
    return hasattr(units, "adjacency_matrix") and hasattr(units, "build") and hasattr(units, "get_neurons_of_layer")


class DenseWiring:
    """Every neuron connects to every neuron and every input to every neuron; polarity -1 with p=1/3."""

    num_layers = 1

    def __init__(self, units: int, output_dim: Optional[int] = None, erev_init_seed: int = 1111):
        self.units = int(units)
        self.output_dim = self.units if output_dim is None else int(output_dim)
        self.input_dim: Optional[int] = None
        self.sensory_adjacency_matrix: Optional[np.ndarray] = None
        self._rng = np.random.default_rng(erev_init_seed)
        # One draw per synapse, row by row, as ncps FullyConnected.__init__ does.
        self.adjacency_matrix = self._draw((self.units, self.units))

    def _draw(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=np.int32)
        for src in range(shape[0]):
            for dest in range(shape[1]):
                out[src, dest] = self._rng.choice([-1, 1, 1])
        return out

    def is_built(self) -> bool:
        return self.input_dim is not None

    def build(self, input_dim: int) -> None:
        if self.input_dim is not None:
            if self.input_dim != input_dim:
                raise ValueError(f"wiring was built for {self.input_dim} inputs, not {input_dim}")
            return
        self.input_dim = int(input_dim)
        self.sensory_adjacency_matrix = self._draw((self.input_dim, self.units))

    def get_neurons_of_layer(self, layer_id: int) -> list[int]:
        return list(range(self.units))

    def erev_initializer(self, shape: Any = None, dtype: Any = None) -> np.ndarray:
        return np.copy(self.adjacency_matrix)

    def sensory_erev_initializer(self, shape: Any = None, dtype: Any = None) -> np.ndarray:
        return np.copy(self.sensory_adjacency_matrix)
