"""Symmetric-shapes data: point groups, the loss over every correct answer, and the exact floor.

Named bugs: the floor computed from the orbit of the vertex instead of the group average (wrong
when the target is not a single-vertex field); an orbit image permuted the wrong way (a correct
answer with non-zero loss); padding counted in the loss; a symmetric prediction below the floor.
"""

import numpy as np
import pytest

from experiments.symmetric_shapes import data as D
from experiments.symmetric_shapes import main as M

ORDERS = {"tetrahedron": 24, "cube": 48, "octahedron": 48, "triangle": 12, "square": 16, "hexagon": 24,
          "square_pyramid": 8, "triangular_prism": 12}


def test_point_groups_and_floor_closed_form():
    assert set(ORDERS) == set(D.SHAPE_NAMES)
    for name in D.SHAPE_NAMES:
        assert len(D.orbit(name)) == ORDERS[name]
        m = D.vertex_orbit_size(name)
        assert D.FLOORS[name] == pytest.approx(1 - 1 / m, abs=1e-12)


def test_every_correct_answer_has_zero_loss_and_symmetric_fields_sit_on_or_above_the_floor():
    rng = np.random.default_rng(0)
    b = D.sample(rng, 64)
    for k in (0, 3, 7):
        np.testing.assert_allclose(D.relative_errors(b["targets"][:, k], b["targets"], b["mask"]), 0.0, atol=1e-10)
    for name in D.SHAPE_NAMES:
        pts, _ = D.TEMPLATES[name]
        n = len(pts)
        targets = np.zeros((1, D.MAX_ORDER, D.N_MAX, 3))
        images = D.orbit(name)
        targets[0, :len(images), :n] = images
        targets[0, len(images):] = targets[0, 0]
        mask = (np.arange(D.N_MAX) < n)[None]
        best = np.zeros((1, D.N_MAX, 3))
        best[0, :n] = images.mean(0)                           # the group average
        assert D.relative_errors(best, targets, mask)[0] == pytest.approx(D.FLOORS[name], abs=1e-9)
        # any other invariant field (radial, equal at symmetric points) is worse
        for c in (0.0, 0.05, 0.3):
            field = np.zeros((1, D.N_MAX, 3))
            field[0, :n] = c * pts
            assert D.relative_errors(field, targets, mask)[0] >= D.FLOORS[name] - 1e-9
        junk = best.copy()
        junk[0, n:] = 100.0                                     # padding is ignored
        assert D.relative_errors(junk, targets, mask)[0] == pytest.approx(D.FLOORS[name], abs=1e-9)


def test_instances_are_moved_templates():
    b = D.sample(np.random.default_rng(1), 16)
    assert b["points"].shape == (16, D.N_MAX, 3) and b["targets"].shape == (16, D.MAX_ORDER, D.N_MAX, 3)
    for i in range(16):
        name = D.SHAPE_NAMES[b["shape"][i]]
        n = int(b["mask"][i].sum())
        pts, _ = D.TEMPLATES[name]
        assert n == len(pts) and np.all(b["points"][i, n:] == 0)
        back = (b["points"][i, :n] - b["translation"][i]) @ b["rotation"][i] / b["scale"][i]
        np.testing.assert_allclose(back, pts[b["order"][i][:n]], atol=1e-5)


def test_presets_parse():
    cfg, _ = M.parse_args(["--preset", "demo", "--num-steps", "3", "--encodings", "none,mlp"])
    assert cfg.num_steps == 3 and cfg.encodings == ("none", "mlp")
    with pytest.raises(SystemExit):
        M.parse_args(["--encodings", "bogus"])
    assert M.PRESETS["cpu"].encodings == ("none", "noise", "haar", "covariance", "sympe", "mlp")
