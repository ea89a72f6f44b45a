"""Ising ground states with a p4m G-CNN: SymPE against no symmetry breaking, noise and a CNN.

The model maps the Hamiltonian (constant couplings J_x, J_y and field h, as per-site channels
[J_right, J_up, J_left, J_down, h]) to per-site logits of independent spins; the loss is the
expected energy per site under that product law (no labels), after a first phase on its
spherical relaxation (``relax_fraction``, ``relax_ramp``). Training Hamiltonians: with
probability 1 - plane_fraction the paper's law (J_x = 1, J_y ~ U(-3, 3), h ~ U(0, 2), axes
swapped with probability 1/2), otherwise (J_x, J_y) uniform on [-3, 3]^2 with h ~ U(0, 2); the
``cpu`` preset draws every one from the plane (plane_fraction = 1), so that every phase,
checkerboard included, is seen in training in the proportions of the held-out plane (our
choice: the paper's law has J_x = 1 or J_y = 1 and never produces the checkerboard). Beside the
couplings, every model gets two D4-invariant scalars of the bond signs (``sign_scale``; the
``demo`` preset leaves them out).

Evaluation (final parameters, no selection): held-out Hamiltonians from the paper's law, energy
per site of a sampled configuration and of the most likely one (sign of the logits), gap to the
exact e_min, fraction solved exactly (gap < 1e-6), per true phase; and the predicted phase over
a (J_x, J_y) grid at fixed h, drawn beside the true phase diagram.

    python -m experiments.ising --preset demo                  # 2 methods, 400 steps: ~1 min
    python -m experiments.ising --preset cpu                   # ~25 min on 2 CPU cores
    python -m experiments.ising --preset paper                 # L = 16, for an accelerator (our recipe, bond signs included)
    python -m experiments.ising --preset cpu --encodings none,sympe --num-steps 300 --seeds 0   # override any field

Runs are checkpointed under runs/ising/<preset>-<config hash>/<method>_seed<k>/ and resume where they stopped;
a run whose result file exists is not trained again (--force deletes the run directory and retrains).
Writes results/ising/<preset>_<method>_seed<k>.json, results/ising/summary.json and
results/ising/phase_diagram.png (other presets: with a ``<preset>_`` prefix); the ``demo`` preset
and tags starting with ``demo``/``smoke`` write them under runs/ising/results/ instead (git-ignored).
"""

from __future__ import annotations

import dataclasses
import pathlib
import platform
import sys
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from experiments._lib import config as common
from experiments._lib import distributed, rundir
from experiments._lib import train as training
from experiments._lib.config import option
from experiments.ising import data as ising
from experiments.ising.models import METHODS, LatticeModel

ROOT = pathlib.Path(__file__).resolve().parents[2]
LABELS = {"none": "G-CNN, no symmetry breaking", "noise": "G-CNN + Gaussian noise",
          "cnn": "CNN + learned positional map (not equivariant)", "sympe": "G-CNN + SymPE"}


@dataclasses.dataclass(frozen=True)
class Config:
    LATE_DEFAULTS: ClassVar[dict] = {"atol": 1e-4, "invariant_inputs": False,   # fields added after runs were recorded
                                     "antiferro_fraction": 0.0, "antiferro_until": 1.0, "relax_fraction": 0.0, "relax_ramp": 0.2,
                                     "anneal_temperature": 0.0, "anneal_fraction": 0.5,
                                     "boundary_fraction": 0.0, "boundary_margin": 0.4, "sign_scale": 0.0}

    preset: str = option("cpu", "preset name (with --tag: <preset>-<tag>), the prefix of result files")
    L: int = option(8, "side of the periodic lattice (even)")
    features: tuple[int, ...] = option((8, 8, 8), "comma-separated channels of the G-CNN layers")
    scorer_features: tuple[int, ...] = option((4,), "comma-separated channels of SymPE's scoring G-CNN")
    pe_features: int = option(4, "channels of the symmetry-breaking encoding")
    batch_size: int = option(64, "Hamiltonians per training step")
    num_steps: int = option(2500, "training steps")
    learning_rate: float = option(3e-3, "peak learning rate (warmup, then cosine decay)")
    warmup_steps: int = option(100, "linear learning-rate warmup steps")
    clip_norm: float = option(1.0, "global-norm gradient clipping")
    plane_fraction: float = option(1.0, "share of training Hamiltonians drawn uniformly on the (J_x, J_y) plane "
                                        "instead of from the paper's law (one coupling 1, the other U(-3, 3))")
    encodings: tuple[str, ...] = option(tuple(METHODS), "comma-separated methods to run, each a model and its "
                                                        "symmetry breaking", aliases=("--methods",))
    seeds: tuple[int, ...] = option((0, 1, 2), "comma-separated training seeds")
    num_eval: int = option(512, "held-out test Hamiltonians")
    eval_seed: int = option(12345, "seed of the validation and test Hamiltonians")
    grid_n: int = option(25, "points per axis of the (J_x, J_y) phase-diagram grid")
    grid_h: float = option(0.5, "field h of the phase-diagram grid")
    checkpoint_every: int = option(500, "steps between checkpoints")
    atol: float = option(1e-4, "tie tolerance of SymPE's argmax over the lifted scores")
    invariant_inputs: bool = option(False, "add the D4-invariant bond scalars [J_x + J_y, |J_x - J_y|] as input "
                                           "channels (the phase becomes linear in the input)")
    sign_scale: float = option(0.3, "add the D4-invariant scalars of the bond signs, models.bond_invariants("
                                    "tanh(J / sign_scale)), as input channels (0: off)")
    antiferro_fraction: float = option(0.3, "share of training Hamiltonians drawn from the antiferromagnetic quadrant "
                                            "(J_x, J_y ~ U(-3, 0)) instead of the mixture above, early in training")
    antiferro_until: float = option(0.2, "share of the training steps during which antiferro_fraction applies "
                                         "(later steps: the mixture above, balanced across every phase boundary)")
    relax_fraction: float = option(0.4, "share of the training steps on the relaxed (spherical) energy, before the "
                                        "crossover to the expected energy (0: expected energy throughout)")
    relax_ramp: float = option(0.2, "share of the training steps over which the loss crosses linearly from the "
                                    "relaxed to the expected energy")
    anneal_temperature: float = option(0.0, "initial temperature tau_0 of the annealed free-energy loss, in units of "
                                            "|J_x| + |J_y| per Hamiltonian (0: the plain expected energy)")
    anneal_fraction: float = option(0.5, "share of the training steps over which tau decays linearly to 0")
    boundary_fraction: float = option(0.0, "share of training Hamiltonians drawn uniformly from the part of the plane "
                                           "within boundary_margin of a phase boundary, instead of the mixture above")
    boundary_margin: float = option(0.4, "margin (energy per site, data.phase_margin) below which a Hamiltonian "
                                         "counts as near a phase boundary")


PRESETS = {
    "cpu": Config(),
    "demo": Config(preset="demo", num_steps=400, warmup_steps=50, encodings=("none", "sympe"), seeds=(0,),
                   num_eval=256, grid_n=9, checkpoint_every=200, plane_fraction=0.5, sign_scale=0.0),
    "paper": Config(preset="paper", L=16, features=(32, 32, 32, 32, 32, 32), scorer_features=(8, 8),
                    pe_features=8, batch_size=64, num_steps=20000, learning_rate=3e-3, warmup_steps=500,
                    num_eval=2048, grid_n=49, checkpoint_every=2000),
}


def sample_train_params(rng: np.random.Generator, n: int, plane_fraction: float,
                        antiferro_fraction: float = 0.0, boundary_fraction: float = 0.0,
                        boundary_margin: float = 0.4) -> tuple[np.ndarray, ...]:
    """Training Hamiltonians: the paper's law mixed with the uniform (J_x, J_y) plane, and with
    probability ``antiferro_fraction`` the antiferromagnetic quadrant (J_x, J_y ~ U(-3, 0))
    instead; then with probability ``boundary_fraction`` one from :func:`near_boundary_params`
    instead. Returns float32[n] arrays ``(jx, jy, h)``; ``h ~ U(0, 2)`` always."""
    jy = rng.uniform(-3, 3, n)
    jx = np.ones(n)
    swap = rng.random(n) < 0.5
    jx, jy = np.where(swap, jy, jx), np.where(swap, jx, jy)
    plane = rng.random(n) < plane_fraction
    jx = np.where(plane, rng.uniform(-3, 3, n), jx)
    jy = np.where(plane, rng.uniform(-3, 3, n), jy)
    h = rng.uniform(0, 2, n)
    if antiferro_fraction > 0:      # drawn after h, so that 0 keeps the earlier draws exactly
        af = rng.random(n) < antiferro_fraction
        jx = np.where(af, rng.uniform(-3, 0, n), jx)
        jy = np.where(af, rng.uniform(-3, 0, n), jy)
    if boundary_fraction > 0:       # drawn last, so that 0 keeps the earlier draws exactly
        near = rng.random(n) < boundary_fraction
        bjx, bjy, bh = near_boundary_params(rng, n, boundary_margin)
        jx, jy, h = np.where(near, bjx, jx), np.where(near, bjy, jy), np.where(near, bh, h)
    return tuple(a.astype(np.float32) for a in (jx, jy, h))


def near_boundary_params(rng: np.random.Generator, n: int, margin: float) -> tuple[np.ndarray, ...]:
    """``n`` Hamiltonians uniform on the part of the plane law (J_x, J_y ~ U(-3, 3), h ~ U(0, 2))
    whose :func:`~experiments.ising.data.phase_margin` is below ``margin``: rejection sampling.

    The margin is the energy difference of the two best ordered states, the same function of the
    parameters on either side of a boundary, so this law puts equal weight on both sides of every
    boundary (meant to sharpen the learned boundary without moving it; the ``fix_boundary_0.25``
    ablation variant measures that it does not sharpen it). Returns float64[n] arrays."""
    if not margin > 0:
        raise ValueError(f"boundary margin must be > 0, got {margin}")
    out = [np.empty(0)] * 3
    while out[0].size < n:
        jx, jy, h = rng.uniform(-3, 3, 8 * n), rng.uniform(-3, 3, 8 * n), rng.uniform(0, 2, 8 * n)
        keep = np.asarray(ising.phase_margin(jx, jy, h)) < margin
        out = [np.concatenate([o, a[keep]]) for o, a in zip(out, (jx, jy, h))]
    return tuple(o[:n] for o in out)


def plane_params(seed: int, n: int) -> tuple[np.ndarray, ...]:
    """Held-out Hamiltonians uniform on the (J_x, J_y) plane, [-3, 3]^2, h ~ U(0, 2): every phase,
    the checkerboard included (a quarter of them), which the paper's law never produces."""
    return sample_train_params(np.random.default_rng([seed, 0]), n, plane_fraction=1.0)


def antiferro_share(cfg: Config, step: int) -> float:
    """Share of the training Hamiltonians of update ``step`` drawn from the antiferromagnetic
    quadrant: ``antiferro_fraction`` for the first ``antiferro_until`` of the steps, then 0.

    Early, the extra checkerboard data lets that phase emerge on every seed instead of losing the
    race to the stripes (which the uniform plane gives twice the data); later, the mixture alone
    keeps the density of training Hamiltonians equal on both sides of every phase boundary, where
    extra antiferromagnetic data would pull the learned boundary into the stripe phases.
    """
    return cfg.antiferro_fraction if step < cfg.antiferro_until * cfg.num_steps else 0.0


def relax_weight(cfg: Config, step: int) -> float:
    """Weight of the relaxed energy in the loss at update ``step``: 1 for the first
    ``relax_fraction`` of the steps, then a linear crossover over ``relax_ramp`` of them to 0 (the
    expected energy alone). See :func:`experiments.ising.data.relaxed_energy` for why."""
    if cfg.relax_fraction <= 0:
        return 0.0
    start, ramp = cfg.relax_fraction * cfg.num_steps, cfg.relax_ramp * cfg.num_steps
    if ramp <= 0:
        return float(step < start)
    return float(min(1.0, max(0.0, 1.0 - (step - start) / ramp)))


def temperature(cfg: Config, step: int) -> float:
    """tau at update ``step``: ``anneal_temperature``, decaying linearly to 0 over the first
    ``anneal_fraction`` of the steps, then 0 (the loss is then the plain expected energy).

    The loss is the mean-field free energy ``e - tau (|J_x| + |J_y|) s`` per site, ``s`` the mean
    entropy of the spins. Measured in units of ``|J_x| + |J_y|``, every Hamiltonian's ground-state
    mode (ferromagnetic, stripes or checkerboard) leaves the disordered state at the same
    ``tau = 2`` and every competing mode only below it, so annealing through ``tau = 2`` lets each
    Hamiltonian order in its own ground-state mode first (deterministic annealing).
    """
    if cfg.anneal_temperature <= 0:
        return 0.0
    span = max(cfg.anneal_fraction * cfg.num_steps, 1.0)
    return float(cfg.anneal_temperature * max(0.0, 1.0 - step / span))


def make_model(cfg: Config, method: str) -> LatticeModel:
    return LatticeModel(method=method, features=cfg.features, pe_features=cfg.pe_features,
                        scorer_features=cfg.scorer_features, atol=cfg.atol, invariant_inputs=cfg.invariant_inputs,
                        sign_scale=cfg.sign_scale)


def evaluate(model: LatticeModel, params, key: jax.Array, jx, jy, h, L: int) -> dict[str, np.ndarray]:
    """Per-instance energies of sampled and most likely configurations, and the expected energy."""
    x = ising.to_input(jx, jy, h, L)
    logits = jax.jit(model.apply)(params, key, x)
    k_sample = jax.random.fold_in(key, 1)
    sampled = jnp.where(jax.random.uniform(k_sample, logits.shape) < jax.nn.sigmoid(logits), 1.0, -1.0)
    argmax = jnp.where(logits >= 0, 1.0, -1.0)
    bonds = ising.constant_bonds(jx, jy, L)
    out = {
        "e_sampled": ising.energy_const(sampled, jx, jy, h),
        "e_argmax": ising.energy_const(argmax, jx, jy, h),
        "e_expected": ising.expected_energy(ising.mean_from_logits(logits), bonds, h[:, None, None]),
        "e_min": ising.e_min(jx, jy, h, L),
        "e_inv": ising.e_inv(jx, jy, h),
        "phase_true": ising.ground_state_phase(jx, jy, h, L),
        "phase_argmax": ising.classify(argmax),
    }
    return {k: np.asarray(v) for k, v in out.items()}


PHASE_KEYS = {ising.FERRO: "ferro", ising.ANTIFERRO: "antiferro", ising.ROW_STRIPES: "row_stripes",
              ising.COLUMN_STRIPES: "column_stripes"}
"""Result-file key of each ordered phase (with h > 0 every ground state is one of these four)."""


def evaluate_plane(model: LatticeModel, params, cfg: Config) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """The held-out plane test of a run: its Hamiltonians ``(jx, jy, h)`` (:func:`plane_params`)
    and :func:`evaluate` of them, with the run's fixed evaluation seed and key."""
    plane = plane_params(cfg.eval_seed + 4, cfg.num_eval)
    return plane, evaluate(model, params, jax.random.key(cfg.eval_seed + 5), *plane, cfg.L)


def summarize(ev: dict[str, np.ndarray]) -> dict[str, float]:
    """Gaps and solved fractions (gap < 1e-6), overall and per true phase (NaN for an absent phase)."""
    gap_s = ev["e_sampled"] - ev["e_min"]
    gap_a = ev["e_argmax"] - ev["e_min"]
    stripes = np.isin(ev["phase_true"], [ising.ROW_STRIPES, ising.COLUMN_STRIPES])
    ferro = ev["phase_true"] == ising.FERRO
    res = {
        "gap_sampled": float(gap_s.mean()), "gap_argmax": float(gap_a.mean()),
        "solved_sampled": float((gap_s < 1e-6).mean()), "solved_argmax": float((gap_a < 1e-6).mean()),
        "below_e_inv_fraction": float((ev["e_expected"] < ev["e_inv"] - 1e-5).mean()),
        "num_stripe": int(stripes.sum()), "num_ferro": int(ferro.sum()),
    }
    phases = [(name, ev["phase_true"] == p) for p, name in PHASE_KEYS.items()]
    for name, sel in [("stripe", stripes)] + phases:
        res[f"num_{name}"] = int(sel.sum())
        res[f"{name}_gap_sampled"] = float(gap_s[sel].mean()) if sel.any() else float("nan")
        res[f"{name}_gap_argmax"] = float(gap_a[sel].mean()) if sel.any() else float("nan")
        res[f"{name}_solved_sampled"] = float((gap_s[sel] < 1e-6).mean()) if sel.any() else float("nan")
        res[f"{name}_solved_argmax"] = float((gap_a[sel] < 1e-6).mean()) if sel.any() else float("nan")
    return res


def run_one(cfg: Config, method: str, seed: int, force: bool = False, root: pathlib.Path = ROOT,
            out_dir: pathlib.Path | None = None) -> dict:
    """Train and evaluate one (method, seed), or return its result file's record if it exists.
    ``force`` retrains from scratch: the run directory is deleted, nothing resumes. ``out_dir``:
    where the result file goes (default: the experiment's results directory)."""
    out_dir = common.results_dir(root, "ising", cfg) if out_dir is None else out_dir
    out_path, old = common.finished_run(out_dir, cfg, method, seed, force)
    if old is not None:
        return old
    cfg_dict = dataclasses.asdict(cfg)
    L = cfg.L
    model = make_model(cfg, method)
    key = jax.random.key(seed)
    k_init, k_train = jax.random.split(key)
    params = model.init(k_init, jax.random.key(0), jnp.zeros((1, L, L, 5)))

    def loss_fn(p, batch, k):
        jx, jy, h, tau, w = batch
        logits = model.apply(p, k, ising.to_input(jx, jy, h, L))
        bonds, field = ising.constant_bonds(jx, jy, L), h[:, None, None]
        e = ising.expected_energy(ising.mean_from_logits(logits), bonds, field)
        f = e - tau * (jnp.abs(jx) + jnp.abs(jy)) * jnp.mean(ising.entropy_from_logits(logits), axis=(-2, -1))
        loss = w * ising.relaxed_energy(logits, bonds, field) + (1 - w) * f
        gap = e - ising.e_min(jx, jy, h)
        return jnp.mean(loss), {"expected_gap": jnp.mean(gap), "temperature": jnp.mean(tau),
                                "relax_weight": jnp.mean(w)}

    def rows(i, index, count):
        jx, jy, h = sample_train_params(np.random.default_rng([seed, i]), cfg.batch_size, cfg.plane_fraction,
                                        antiferro_share(cfg, i), cfg.boundary_fraction, cfg.boundary_margin)
        mine = distributed.local_rows(cfg.batch_size, index, count)
        jx, jy, h = jx[mine], jy[mine], h[mine]
        # the schedules travel as per-row columns, so that the batch shards like the rest
        return jx, jy, h, np.full_like(jx, temperature(cfg, i)), np.full_like(jx, relax_weight(cfg, i))

    batch_fn = distributed.per_process(rows)

    val = ising.sample_params(jax.random.key(cfg.eval_seed + 1), 128)

    def eval_fn(p, k):
        s = summarize(evaluate(model, p, k, val.jx, val.jy, val.h, L))
        return {"val_gap_argmax": s["gap_argmax"], "val_stripe_solved_argmax": s["stripe_solved_argmax"]}

    tcfg = training.TrainConfig(num_steps=cfg.num_steps, eval_every=max(cfg.num_steps // 5, 1),
                                checkpoint_every=cfg.checkpoint_every, log_every=50, progress=True)
    optimizer = training.make_optimizer(cfg.learning_rate, cfg.num_steps, warmup_steps=cfg.warmup_steps,
                                        clip_norm=cfg.clip_norm)
    workdir = common.run_workdir(root, "ising", cfg, method, seed, force=force)
    _say(f"[{method} seed {seed}] training {cfg.num_steps} steps (workdir {workdir.relative_to(root)})")
    result = training.train(tcfg, loss_fn=loss_fn, params=params, optimizer=optimizer, batch_fn=batch_fn,
                            key=k_train, workdir=workdir, eval_fn=eval_fn)
    train_time = result.wall_time_s
    params = distributed.local_copy(result.params)
    test = ising.sample_params(jax.random.key(cfg.eval_seed), cfg.num_eval)
    ev = evaluate(model, params, jax.random.key(cfg.eval_seed + 2), test.jx, test.jy, test.h, L)
    _, pev = evaluate_plane(model, params, cfg)
    grid_vals = np.linspace(-3, 3, cfg.grid_n).astype(np.float32)
    grid = ising.grid_params(grid_vals, grid_vals, cfg.grid_h)
    gev = evaluate(model, params, jax.random.key(cfg.eval_seed + 3), grid.jx, grid.jy, grid.h, L)
    gsum = summarize(gev)
    record = {
        "method": method, "label": LABELS[method], "seed": seed, "config": cfg_dict,
        "test": summarize(ev), "test_plane": summarize(pev),
        "grid": {"jx": grid_vals.tolist(), "jy": grid_vals.tolist(), "h": cfg.grid_h,
                 "phase_true": gev["phase_true"].reshape(cfg.grid_n, cfg.grid_n).tolist(),
                 "phase_argmax": gev["phase_argmax"].reshape(cfg.grid_n, cfg.grid_n).tolist(),
                 "solved_argmax": float((gev["e_argmax"] - gev["e_min"] < 1e-6).mean()),
                 "phase_solved_argmax": {name: gsum[f"{name}_solved_argmax"] for name in PHASE_KEYS.values()}},
        "train_wall_time_s": round(train_time, 1), "steps_per_second": result.steps_per_second,
        "resumed_from": result.resumed_from,
        "num_params": int(sum(x.size for x in jax.tree_util.tree_leaves(result.params))),
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "device": jax.devices()[0].platform,
    }
    t = record["test"]
    if distributed.is_main():
        training.save_json(out_path, record)
    _say(f"[{method} seed {seed}] gap argmax {t['gap_argmax']:.4f} sampled {t['gap_sampled']:.4f} | "
         f"stripes solved {t['stripe_solved_argmax']:.3f} | {train_time:.0f}s")
    return record


def _say(*args) -> None:
    """``print`` (flushed) in process 0 only."""
    if distributed.is_main():
        print(*args, flush=True)


def aggregate(cfg: Config, records: list[dict], command: str) -> dict:
    rows = {}
    keys = ["gap_sampled", "gap_argmax", "solved_sampled", "solved_argmax", "stripe_gap_sampled", "stripe_gap_argmax",
            "stripe_solved_sampled", "stripe_solved_argmax", "ferro_solved_argmax", "below_e_inv_fraction"]
    for method in cfg.encodings:
        rs = [r for r in records if r["method"] == method]
        rows[method] = {"label": LABELS[method], "seeds": [r["seed"] for r in rs],
                        "train_wall_time_s": [r["train_wall_time_s"] for r in rs],
                        "grid_solved_argmax": [r["grid"]["solved_argmax"] for r in rs]}
        for k in keys:
            vals = np.array([r["test"][k] for r in rs], float)
            rows[method][k] = [float(vals.mean()), float(vals.std())]
        for name in PHASE_KEYS.values():
            rows[method][f"plane_{name}_solved_argmax"] = [r["test_plane"][f"{name}_solved_argmax"] for r in rs]
            rows[method][f"grid_{name}_solved_argmax"] = [r["grid"]["phase_solved_argmax"][name] for r in rs]
        rows[method]["plane_solved_argmax"] = [r["test_plane"]["solved_argmax"] for r in rs]
    return {"preset": cfg.preset, "command": command, "config": dataclasses.asdict(cfg), "seeds": list(cfg.seeds),
            "methods": list(cfg.encodings), "num_eval": cfg.num_eval, "rows": rows,
            "num_stripe": records[0]["test"]["num_stripe"], "num_ferro": records[0]["test"]["num_ferro"]}


def plot_phase_diagram(records: list[dict], methods: tuple[str, ...], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#bbbbbb"]
    cmap = ListedColormap(colors)
    first = common.lowest_seed_records(records, "method")
    ref = next(iter(first.values()))["grid"]
    def title(m):
        per = first[m]["grid"]["phase_solved_argmax"]
        return (f"{LABELS[m]}\nsolved {first[m]['grid']['solved_argmax']:.0%}: " + " ".join(
            f"{short} {per[name]:.0%}" for short, name in zip("FARC", PHASE_KEYS.values())))

    panels = [("true ground state", ref["phase_true"])] + [
        (title(m), first[m]["grid"]["phase_argmax"]) for m in methods if m in first]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), constrained_layout=True)
    ext = [ref["jx"][0], ref["jx"][-1], ref["jy"][0], ref["jy"][-1]]
    for ax, (title, phase) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.asarray(phase).T, origin="lower", extent=ext, cmap=cmap, vmin=-0.5, vmax=4.5,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("$J_x$")
        ax.set_ylabel("$J_y$")
    fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(colors, ising.PHASES)], loc="lower center",
               ncol=5, bbox_to_anchor=(0.5, -0.08), fontsize=8)
    fig.suptitle(f"Phase of the most likely configuration, h = {ref['h']} (seed {min(r['seed'] for r in records)}); "
                 "solved per true phase: F ferromagnetic, A antiferromagnetic, R row stripes, C column stripes",
                 fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def parse_args(argv=None):
    cfg, args = common.parse_config(Config, PRESETS, argv, doc=__doc__, choices={"encodings": METHODS},
                                    prog="python -m experiments.ising")
    if cfg.L % 2:
        raise SystemExit("L must be even (odd L frustrates antiferromagnetic couplings)")
    return cfg, args


@distributed.fail_fast
@rundir.exit_on_run_error
def main(argv=None) -> int:
    cfg, args = parse_args(argv)
    distributed.initialize(args.distributed)
    command = common.command_line("ising", argv)
    _say(f"Ising experiment, preset {cfg.preset}: L={cfg.L}, {cfg.num_steps} steps, methods {cfg.encodings}, "
         f"seeds {cfg.seeds}")
    t0 = time.time()
    out_dir = common.results_dir(ROOT, "ising", cfg)
    cfg, records, _ = common.collect_records(cfg, args, out_dir, lambda m, s: run_one(cfg, m, s, args.force),
                                             names="encodings", field="method")
    if not distributed.is_main():
        return 0
    summary = aggregate(cfg, records, command)
    summary["wall_time_s"] = round(time.time() - t0, 1)       # this process (summarize-only: no training)
    summary["runs_train_wall_time_s"] = round(sum(r["train_wall_time_s"] for r in records), 1)
    prefix = common.summary_prefix(cfg.preset)
    training.save_json(out_dir / f"{prefix}summary.json", summary)
    plot_phase_diagram(records, cfg.encodings, out_dir / f"{prefix}phase_diagram.png")
    print("\nmethod | gap argmax | stripe gap argmax | stripe solved argmax | below e_inv")
    for m in cfg.encodings:
        r = summary["rows"][m]
        print(f"{m:6s} | {r['gap_argmax'][0]:.4f} ± {r['gap_argmax'][1]:.4f} | {r['stripe_gap_argmax'][0]:.4f} | "
              f"{r['stripe_solved_argmax'][0]:.3f} | {r['below_e_inv_fraction'][0]:.3f}")
    print(f"wrote {out_dir / (prefix + 'summary.json')} and {out_dir / (prefix + 'phase_diagram.png')} "
          f"({summary['wall_time_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
