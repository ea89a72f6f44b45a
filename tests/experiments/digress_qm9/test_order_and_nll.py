"""The order diagnostic, the leak controls, the learned scorer and the NLL's conventions (issue 20).

* The NLL's four terms against the reference DiGress's definitions, computed by hand (NumPy,
  explicit loops) on a two-node molecule: node-count prior from the histogram, prior KL,
  T x the posterior KL and the reconstruction, edges counted as (i, j) and (j, i).
* ``DiGress.nll(..., perm)`` reuses the draws of t, z_t and z_0: an exactly equivariant
  deterministic denoiser gives the same NLL per molecule in both orders.
* On the QM9 test fixture, the order diagnostic (``main.test_nll`` with ``permute_key``)
  flags a denoiser that reads positions (``index_pe``, with a readout built to use the SMILES
  atom order) and passes the same readout behind SymPE.
* The leak modes and the learned scorer: what they read, and that the scorer gets a gradient.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.digress_qm9 import main as dq
from experiments.digress_qm9.diffusion import DiffusionConfig, DiGress, dense
from experiments.digress_qm9.diffusion import sympe as S
from tests.experiments.digress_qm9.diffusion.conftest import molecule_like_batch

# ----------------------------------------------------------------------------- NLL conventions


def _table_denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic):
    """Logits read from ``params`` ([1, n, dx], [1, n, n, de]; one per time: index 0 at t > 0,
    1 at t = 0), whatever the noisy graph: the hand computation knows every prediction."""
    at_zero = (t_over_T == 0)[:, None, None]
    X = jnp.where(at_zero, params["X0"], params["X"])
    E = jnp.where(at_zero[..., None], params["E0"], params["E"])
    return X, E


def _posterior(x, z_t, Qt, Qsb, Qtb):
    """The reference's q(z_s | z_t, x) for one row: (z_t Q_t^T) * (x Qbar_s) / (x Qbar_t z_t^T)."""
    return (Qt @ z_t) * (x @ Qsb) / ((x @ Qtb) @ z_t)


def _masked(p):
    """The reference's mask_distributions on a real row: + 1e-7, renormalise."""
    p = p + 1e-7
    return p / p.sum()


def _kl(p, q):
    return float(np.sum(p * (np.log(p) - np.log(q))))


def test_nll_terms_equal_the_reference_definitions_on_a_two_node_molecule():
    """Bug: an edge counted once instead of as (i, j) and (j, i); the node-count prior not from
    the histogram; a term summed over padding or the diagonal; T missing from the diffusion term."""
    T, n, dx, de = 10, 3, 4, 4                     # node 2 is padding
    hist = np.array([0.0, 1.0, 3.0, 6.0])          # p(N = 2) = 0.3
    xm, em = np.array([0.6, 0.2, 0.15, 0.05]), np.array([0.7, 0.2, 0.07, 0.03])
    dg = DiGress(_table_denoiser, x_marginals=xm, e_marginals=em, n_nodes_histogram=hist,
                 config=DiffusionConfig(T=T))
    mask = jnp.array([[True, True, False]])
    atoms, bonds = np.array([0, 2, -1]), np.array([[0, 1, -1], [1, 0, -1], [-1, -1, -1]])   # C-O, single bond
    X, E = dense.encode(jnp.asarray(atoms)[None], jnp.asarray(bonds)[None], mask, dx, de)
    # Hand-picked draws: z_t = (N, O) with no bond; z_0 = (C, O) with a double bond.
    Xt, Et = dense.encode(jnp.array([[1, 2, -1]]), jnp.array([[[0, 0, -1], [0, 0, -1], [-1, -1, -1]]]), mask, dx, de)
    X0, E0 = dense.encode(jnp.array([[0, 2, -1]]), jnp.array([[[0, 2, -1], [2, 0, -1], [-1, -1, -1]]]), mask, dx, de)
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in
              {"X": (1, n, dx), "X0": (1, n, dx), "E": (1, n, n, de), "E0": (1, n, n, de)}.items()}
    params["E"] = (params["E"] + jnp.swapaxes(params["E"], 1, 2)) / 2
    params["E0"] = params["E0"].at[0, 0, 1].set(params["E0"][0, 1, 0]).at[0, 0, 1, 1].add(0.7)   # (i, j) != (j, i)
    t = jnp.array([4], jnp.int32)
    k = jax.random.key(0)
    got = {key: float(v[0]) for key, v in dg.nll_given(params, k, k, X, E, mask, t, Xt, Et, X0, E0).items()}

    # ---- by hand, float64
    sched = dg.schedule
    ab, beta = np.asarray(sched.alpha_bars, np.float64), np.asarray(sched.betas, np.float64)

    def Q(keep, m):
        return keep * np.eye(len(m)) + (1 - keep) * np.outer(np.ones(len(m)), m)

    softmax = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()  # noqa: E731
    Xn, En, Xtn, Etn, X0n, E0n = (np.asarray(a, np.float64) for a in (X, E, Xt, Et, X0, E0))
    P = {kk: np.asarray(v, np.float64)[0] for kk, v in params.items()}
    nodes, pairs = [0, 1], [(0, 1), (1, 0)]         # real nodes; real ordered off-diagonal pairs

    node_count = -math.log(hist[2] / hist.sum() + 1e-30)

    prior = 0.0
    for x, m, rows in ((Xn[0], xm, nodes), (En[0], em, pairs)):
        for r in rows:
            q = x[r] @ Q(ab[T], m)
            prior += _kl(_masked(q), _masked(m))    # KL(q(z_T | x) || limit)
    # The reference's own direction, KL(limit || q(z_T | x)): both are negligible.
    prior_reference = sum(_kl(_masked(m), _masked(x[r] @ Q(ab[T], m)))
                          for x, m, rows in ((Xn[0], xm, nodes), (En[0], em, pairs)) for r in rows)

    s_, t_ = 3, 4
    diffusion = 0.0
    for x, z, logits, m, rows in ((Xn[0], Xtn[0], P["X"], xm, nodes), (En[0], Etn[0], P["E"], em, pairs)):
        Qt, Qsb, Qtb = Q(1 - beta[t_], m), Q(ab[s_], m), Q(ab[t_], m)
        for r in rows:
            true = _posterior(x[r], z[r], Qt, Qsb, Qtb)
            pred = _posterior(softmax(logits[r]), z[r], Qt, Qsb, Qtb)
            diffusion += _kl(_masked(true), _masked(pred))
    diffusion *= T

    reconstruction = -sum(np.log(softmax(P["X0"][i]))[atoms[i]] for i in nodes) \
        - sum(np.log(softmax(P["E0"][i, j]))[bonds[i, j]] for i, j in pairs)

    np.testing.assert_allclose(got["node_count"], node_count, rtol=1e-6)
    np.testing.assert_allclose(got["prior_kl"], prior, atol=1e-6)
    assert abs(prior - prior_reference) < 1e-5 and prior < 1e-4
    np.testing.assert_allclose(got["diffusion"], diffusion, rtol=2e-4)
    np.testing.assert_allclose(got["reconstruction"], reconstruction, rtol=1e-5)
    np.testing.assert_allclose(got["nll"], node_count + got["prior_kl"] + diffusion + reconstruction, rtol=1e-4)
    # Counting each edge once (twice the upper triangle) differs visibly: the test resolves the convention.
    both = -sum(np.log(softmax(P["E0"][i, j]))[bonds[i, j]] for i, j in pairs)
    assert abs(-2 * np.log(softmax(P["E0"][0, 1]))[bonds[0, 1]] - both) > 0.05


# ----------------------------------------------------------------------------- permuted NLL


def _equivariant_denoiser(params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic):
    """Exactly equivariant and deterministic: each node's and each pair's logits from its own
    noisy class and its degree."""
    deg = jnp.sum(E_t[..., 1:], (2, 3))
    return X_t @ params["wx"] + deg[..., None] * params["bx"], E_t @ params["we"]


def test_permuted_nll_reuses_the_draws():
    """Bug: z_t / z_0 drawn after permuting (fresh noise per order), or the permutation applied
    to some arrays and not others (an equivariant model would then differ between orders)."""
    g = molecule_like_batch(4, 12, de=4)
    dg = DiGress(_equivariant_denoiser, x_marginals=[0.7, 0.1, 0.15, 0.05], e_marginals=[0.7, 0.25, 0.04, 0.01],
                 n_nodes_histogram=np.ones(10), config=DiffusionConfig(T=20))
    rng = np.random.default_rng(1)
    params = {"wx": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32), "bx": jnp.asarray(rng.normal(size=4), jnp.float32),
              "we": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)}
    perm = dq.order_permutations(jax.random.key(3), jnp.arange(12), g.node_mask)
    assert not np.all(np.asarray(perm) == np.arange(9))
    np.testing.assert_array_equal(np.asarray(perm)[~np.asarray(g.node_mask)],
                                  np.broadcast_to(np.arange(9), (12, 9))[~np.asarray(g.node_mask)])   # padding fixed
    key = jax.random.key(5)
    a, b = dg.nll(params, key, g), dg.nll(params, key, g, perm)
    for term in ("nll", "diffusion", "reconstruction", "prior_kl", "node_count"):
        np.testing.assert_allclose(np.asarray(b[term]), np.asarray(a[term]), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(a["t"], b["t"])
    # The same draws without the permutation are the old evaluation: another key differs.
    assert np.abs(np.asarray(dg.nll(params, jax.random.key(6), g)["nll"] - a["nll"])).max() > 1e-2


# ----------------------------------------------------------------------------- the diagnostic on the fixture


@dataclasses.dataclass(frozen=True)
class _PositionReadout:
    """A denoiser whose only input is the row's node channels u (index_pe: v[i]; sympe: v[rank]):
    it predicts a single bond between nodes whose channels are close and no bond otherwise.
    With ``v[k] = (cos k theta, sin k theta)`` and index_pe, "close" means adjacent in the
    node order: in SMILES atom order, bonded atoms mostly are, so this model uses the order."""

    inner: S.SymmetryBreakingDenoiser
    sharpness: float = 6.0

    def __call__(self, params, key, X_t, E_t, y_t, node_mask, t_over_T, *, deterministic):
        u, _ = self.inner.encodings(params, key, X_t, E_t, node_mask)
        close = jnp.einsum("bik,bjk->bij", u, u)                      # 1 adjacent, cos(2 theta) ...
        bond = self.sharpness * (close - 0.9)
        E = jnp.stack([jnp.zeros_like(bond), bond, jnp.full_like(bond, -4.0), jnp.full_like(bond, -4.0)], -1)
        return jnp.zeros(X_t.shape), E


def _readout(mode: str) -> tuple[_PositionReadout, dict]:
    theta = 0.45
    v = jnp.stack([jnp.cos(theta * jnp.arange(9.0)), jnp.sin(theta * jnp.arange(9.0))], -1)
    return _PositionReadout(S.SymmetryBreakingDenoiser(None, mode, features=2)), {"v": v}


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMPE_JAX_CACHE", str(tmp_path_factory.mktemp("qm9cache")))   # process the fixture into a temp cache
    try:
        yield dq.load_data(dq.PRESETS["demo"])
    finally:
        mp.undo()


def _order(data, mode: str) -> dict:
    den, params = _readout(mode)
    dg = DiGress(den, x_marginals=data.info.node_marginals, e_marginals=data.info.edge_marginals,
                 n_nodes_histogram=data.info.n_nodes, config=DiffusionConfig(T=10))
    idx = np.arange(len(data.test))
    key = jax.random.key(7)
    cfg = dq.PRESETS["demo"]
    dataset = dq.test_nll(dg, params, key, data.test, idx, 32, repeats=2)
    permuted = dq.test_nll(dg, params, key, data.test, idx, 32, repeats=2, permute_key=dq.order_key(cfg))
    return dq.order_diagnostic(dataset, permuted)


def test_order_diagnostic_flags_index_pe_and_passes_sympe(fixture_data):
    """Bug: the permuted evaluation does not permute (a leak goes unseen), or permutes the
    graph but not the draws with it (an equivariant row looks order-dependent)."""
    leak, sympe = _order(fixture_data, "index_pe"), _order(fixture_data, "sympe")
    assert leak["num_molecules"] >= 20
    d, se = leak["difference"]
    assert d > 5 * se and d > 2.0, leak                     # permuting the atoms costs the leak nats
    assert leak["nll_permuted"] > leak["nll_dataset"]
    d, se = sympe["difference"]
    assert abs(d) <= 3 * se + 1e-3, sympe                   # equivariant in law: no order effect
    assert abs(d) < 0.1 * leak["difference"][0]


# ----------------------------------------------------------------------------- the leak modes and the scorer


def _tbutyl():
    from experiments.digress_qm9 import molecules
    atoms, bonds = molecules.smiles_to_graph("CC(C)(C)C(=O)N")      # three equivalent methyls: 0, 2, 3
    n = len(atoms)
    X = np.full((1, 9), -1)
    E = np.zeros((1, 9, 9), int)
    X[0, :n], E[0, :n, :n] = atoms, bonds
    mask = jnp.asarray(X >= 0)
    Xo, Eo = dense.encode(jnp.asarray(X), jnp.asarray(E), mask, 4, 4)
    return Xo, Eo, mask, X, E


def test_index_modes_read_the_node_order_and_not_the_key():
    X, E, m, *_ = _tbutyl()
    v = {"v": jnp.arange(27.0).reshape(9, 3)}
    keys = jax.random.split(jax.random.key(0), 6)
    pe = S.SymmetryBreakingDenoiser(None, "index_pe", 3)
    u = np.asarray(pe.encodings(v, keys[0], X, E, m)[0][0])
    np.testing.assert_array_equal(u[:7], np.asarray(v["v"])[:7])           # v[i] for node i
    np.testing.assert_array_equal(u[7:], 0)
    ties = S.SymmetryBreakingDenoiser(None, "sympe_index_ties", 3)
    ranks = {tuple(np.asarray(ties.ranks(k, X, E, m)[0])) for k in keys}
    assert len(ranks) == 1                                                   # deterministic
    r = np.asarray(next(iter(ranks)))
    assert list(r[[0, 2, 3]]) == sorted(r[[0, 2, 3]])                        # tied methyls in index order
    sympe = S.SymmetryBreakingDenoiser(None, "sympe", 3)
    fixed = np.asarray(jax.vmap(lambda k: sympe.ranks(k, X, E, m)[0])(jax.random.split(jax.random.key(1), 30)))
    np.testing.assert_array_equal(fixed[:, [1, 4, 5, 6]], np.broadcast_to(r[[1, 4, 5, 6]], (30, 4)))   # same sort
    assert len({tuple(x[[0, 2, 3]]) for x in fixed}) > 1                     # SymPE: random ties


def test_sympe_clean_sorts_the_clean_graph_and_falls_back_to_z_t():
    X, E, m, *_ = _tbutyl()
    Xt, Et = jnp.roll(X, 1, axis=-1) * m[..., None], E                      # another typed graph
    den = S.SymmetryBreakingDenoiser(None, "sympe_clean", 3)
    assert den.uses_clean_graph and not S.SymmetryBreakingDenoiser(None, "sympe", 3).uses_clean_graph
    v = {"v": jax.random.normal(jax.random.key(0), (9, 3))}
    k = jax.random.key(2)
    with_clean = den.encodings(v, k, Xt, Et, m, clean=(X, E))[0]
    np.testing.assert_array_equal(with_clean, den.encodings(v, k, X, E, m)[0])        # ranks of x0
    np.testing.assert_array_equal(den.encodings(v, k, Xt, Et, m)[0],                   # sampling: ranks of z_t
                                  S.SymmetryBreakingDenoiser(None, "sympe", 3).encodings(v, k, Xt, Et, m)[0])
    assert not np.allclose(with_clean, den.encodings(v, k, Xt, Et, m)[0])


def test_learned_scorer_starts_at_the_fixed_score_and_gets_a_gradient():
    """Bug: the scorer behind a plain sort (zero gradient), or a head that moves the initial score."""
    from experiments.digress_qm9.graph_transformer import GraphTransformerConfig
    X, E, m, *_ = _tbutyl()
    tiny = GraphTransformerConfig(n_layers=1, mlp_X=8, mlp_E=8, mlp_y=8, dx=8, de=4, dy=4, n_head=2,
                                  dim_ffX=8, dim_ffE=4, dim_ffy=8, out_dim_E=4)
    den = S.make_denoiser("sympe_learned", tiny, 3)
    params = den.init(jax.random.key(0), X, E, m)
    assert set(params) == {"net", "v", "scorer"}
    np.testing.assert_allclose(den.scores(X, E, m, scorer=params["scorer"]), den.scores(X, E, m), atol=1e-6)
    w = jax.random.normal(jax.random.key(1), (1, 9, 3))

    def objective(scorer, d):
        u = d.encodings({**params, "scorer": scorer}, jax.random.key(2), X, E, m)[0]
        return jnp.sum(u * w)
    grad = jax.grad(objective)(params["scorer"], den)
    assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(grad))) > 0
    plain = dataclasses.replace(den, mode="sympe")           # the fixed sort: no path to the scorer
    plain_grad = jax.grad(lambda sc: jnp.sum(plain.encodings(params, jax.random.key(2), X, E, m)[0] * w
                                             + 0 * sum(jnp.sum(x) for x in jax.tree.leaves(sc))))(params["scorer"])
    assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(plain_grad))) == 0


def test_ties_against_typed_orbits():
    X, E, m, Xi, Ei = _tbutyl()
    mask = np.asarray(m)
    orb = dq.typed_orbits(Xi[0], Ei[0], mask[0])
    assert orb[0] == orb[2] == orb[3] and len(set(orb)) == 5
    den = S.SymmetryBreakingDenoiser(None, "sympe", 3)
    good = dq.ties_against_orbits(np.asarray(den.scores(X, E, m)), Xi, Ei, mask, 1e-5)
    assert good["ties_equal_orbits_fraction"] == 1.0 and good["tied_node_pct"] == pytest.approx(300 / 7)
    flat = dq.ties_against_orbits(np.zeros((1, 9)), Xi, Ei, mask, 1e-5)       # all tied
    assert flat["ties_equal_orbits_fraction"] == 0.0 and flat["tied_non_automorphic_pair_pct"] > 0


# ----------------------------------------------------------------------------- summary and report


def _record(row, seed, per_molecule, permuted=None, preset="cpu"):
    cfg = dataclasses.asdict(dataclasses.replace(dq.PRESETS["cpu"], preset=preset))
    rec = {"row": row, "label": dq.LABELS[row], "seed": seed, "config": cfg,
           "test_nll": {"nll": float(np.mean(per_molecule)), "node_count": 1.0, "prior_kl": 0.0, "diffusion": 3.0,
                        "reconstruction": 2.0, "nll_sem": 0.5, "per_molecule": per_molecule, "repeats": 1},
           "metrics": {"validity": 0.5, "relaxed_validity": 0.75, "uniqueness": 1.0, "novelty": None,
                       "valid_connected": 0.5},
           "samples_smiles": [], "train": {"wall_time_s": 1.0}}
    if permuted is not None:
        rec["test_nll_permuted"] = {"nll": float(np.mean(permuted)), "per_molecule": permuted}
        rec["order_diagnostic"] = dq.order_diagnostic(rec["test_nll"], rec["test_nll_permuted"])
    return rec


def test_summary_takes_the_order_diagnostic_from_own_or_tagged_runs_and_the_report_renders_it(tmp_path, monkeypatch):
    """Old result files (no diagnostic) must still summarise and render; a tagged retrain of the
    same config supplies their diagnostic; another config's does not."""
    import json
    from experiments import report
    cfg, _ = dq.parse_args(["--preset", "cpu", "--encodings", "digress,sympe,index_pe", "--seeds", "0"])
    old = _record("digress", 0, [10.0, 12.0, 11.0])                      # committed before the diagnostic
    new = _record("index_pe", 0, [9.0, 9.0, 10.0], [19.0, 20.0, 18.0])
    tagged = _record("digress", 0, [10.0, 12.0, 11.0], [10.1, 11.9, 11.0], preset="cpu-order")
    other = _record("sympe", 0, [1.0, 1.0], [5.0, 5.0], preset="cpu-short")
    other["config"]["num_steps"] = 7
    for rec in (tagged, other):
        (tmp_path / f"{rec['config']['preset']}_{rec['row']}_seed0.json").write_text(json.dumps(rec))
    found = dq.order_records(tmp_path, cfg)
    assert [r["config"]["preset"] for r in found] == ["cpu-order"]
    summary = dq.aggregate(cfg, [old, _record("sympe", 0, [9.5, 11.0, 10.0]), new], "cmd", found)
    rows = summary["rows"]
    assert rows["index_pe"]["control"] and not rows["digress"]["control"]
    np.testing.assert_allclose(rows["index_pe"]["order"]["difference"][0], 29.0 / 3)
    assert rows["index_pe"]["order"]["presets"] == ["cpu"] and rows["digress"]["order"]["presets"] == ["cpu-order"]
    assert "order" not in rows["sympe"]                                      # neither its own nor a matching tag
    (tmp_path / "digress_qm9").mkdir()
    (tmp_path / "digress_qm9" / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    text = report.digress_section()
    assert "| DiGress | 0 (`cpu-order`: retrained, same config) | 11.00 | 11.00 |" in text
    assert "| leak control, not equivariant: v[i] by node index, no sorting | 0 | 9.33 | 19.00 | 9.667 ± " in text
    assert "Rows labelled *leak control*" in text
    for row in ("digress", "sympe", "index_pe"):                             # an old summary still renders
        rows[row].pop("order", None)
        rows[row].pop("control", None)
    (tmp_path / "digress_qm9" / "summary.json").write_text(json.dumps(summary))
    text = report.digress_section()
    assert "Order diagnostic" not in text and "leak control" in text   # (the label) but no control note
    assert "Rows labelled" not in text
