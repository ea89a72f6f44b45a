"""The examples run and do what their docstrings say (tiny sizes, about 30 s).

Bound: SymPE must bring the pair BCE below half the floor of a model without symmetry breaking
(the binary entropy of the edge density, which an equivariant model cannot beat on cycles);
the same model without SymPE must stay at or above the floor.
"""

import pytest

from examples import flax_transformer, jraph_gnn


@pytest.mark.parametrize("example", [jraph_gnn, flax_transformer], ids=["jraph_gnn", "flax_transformer"])
def test_sympe_beats_the_floor_that_binds_the_same_model_without_it(example):
    with_sympe = example.main("sympe", steps=300)
    without = example.main("none", steps=300)
    assert with_sympe["loss"] < 0.5 * with_sympe["floor"]
    assert without["loss"] >= without["floor"] - 1e-3
