"""Symmetric shapes under E(3): can an equivariant network push one vertex of a symmetric shape?

Input: a symmetric point cloud (tetrahedron, cube, octahedron, triangle, square, hexagon, square
pyramid, triangular prism), randomly scaled, rotated (Haar on O(3)), translated and reordered.
Target: one vertex pushed outward, defined up to the shape's point group; the loss is the minimum
over the point group of the relative squared error (:mod:`.data`). An equivariant model without
symmetry breaking cannot go below the exact floor ``1 - 1/m`` (m: the size of the vertex's
orbit); the symmetry breakers of :data:`sympe_jax.POINT_CLOUD_ENCODINGS` can. An instance is
*solved* when its relative error (the square root of the loss) is below ``solved_tol``.

    python -m experiments.symmetric_shapes --preset demo     # 2 methods, 60 steps
    python -m experiments.symmetric_shapes --preset cpu      # 6 methods x 3 seeds on 2 CPU cores
    python -m experiments.symmetric_shapes --preset paper    # longer, wider, for an accelerator
    python -m experiments.launch --num-processes 2 -- python -m experiments.symmetric_shapes --preset demo

Several processes (hosts; docs/distributed.md): ``--distributed``, or automatically under
``python -m experiments.launch``, SLURM (``srun``) or a multi-host TPU slice, joins one run of
``jax.distributed``; every process generates the step's global batch of ``batch_size`` shapes
(cheap, and the same as in one process) and trains on its own block of rows of it, every
process evaluates, process 0 alone prints and writes the result files and the figure. The
batch size must be a multiple of the number of processes.

Runs are checkpointed under runs/symmetric_shapes/<preset>-<config hash>/<method>_seed<k>/; a run whose
result file exists is not trained again (--force retrains). Writes
results/symmetric_shapes/<preset>_<method>_seed<k>.json, results/symmetric_shapes/summary.json and
results/symmetric_shapes/predictions.png (other presets: with a ``<preset>_`` prefix; ``demo``
under runs/symmetric_shapes/results/).
"""

from __future__ import annotations

import dataclasses
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._lib import config as common
from experiments._lib import distributed, rundir
from experiments._lib import train as training
from experiments._lib.config import option
from experiments.symmetric_shapes import data
from experiments.symmetric_shapes.models import METHODS, ShapeModel

ROOT = pathlib.Path(__file__).resolve().parents[2]
LABELS = {"none": "E(3)-equivariant net, no symmetry breaking", "noise": "+ Gaussian noise vectors",
          "haar": "+ Haar-random frame", "covariance": "+ covariance frame, random degeneracies",
          "sympe": "+ SymPE, sorted-point frame", "mlp": "MLP + rotation augmentation (not equivariant)"}


@dataclasses.dataclass(frozen=True)
class Config:
    preset: str = option("cpu", "preset name (with --tag: <preset>-<tag>), the prefix of result files")
    hidden: str = option("8x0e + 4x1o + 4x1e", "irreps of the hidden features of the equivariant net")
    num_layers: int = option(2, "message-passing layers")
    pe_features: int = option(4, "vectors of the symmetry-breaking encoding")
    mlp_features: tuple[int, ...] = option((256, 256, 256), "comma-separated widths of the MLP baseline")
    batch_size: int = option(16, "instances per training step")
    num_steps: int = option(300, "training steps")
    learning_rate: float = option(3e-3, "peak learning rate (warmup, then cosine decay)")
    warmup_steps: int = option(30, "linear learning-rate warmup steps")
    clip_norm: float = option(1.0, "global-norm gradient clipping")
    atol: float = option(1e-4, "tie tolerance of the frames (coordinates' units)")
    solved_tol: float = option(0.25, "an instance is solved when its relative error is below this")
    encodings: tuple[str, ...] = option(("none", "noise", "haar", "covariance", "sympe", "mlp"), "comma-separated methods to run")
    seeds: tuple[int, ...] = option((0, 1, 2), "comma-separated training seeds")
    num_eval: int = option(256, "test instances")
    eval_seed: int = option(12345, "seed of the test instances")
    checkpoint_every: int = option(300, "steps between checkpoints")


PRESETS = {
    "cpu": Config(),
    "demo": Config(preset="demo", num_steps=60, encodings=("none", "sympe"), seeds=(0,), num_eval=128,
                   checkpoint_every=100),
    "paper": Config(preset="paper", hidden="32x0e + 16x1o + 16x1e", num_layers=3, batch_size=64, num_steps=5000,
                    num_eval=2048, checkpoint_every=1000),
}


def make_model(cfg: Config, method: str) -> ShapeModel:
    return ShapeModel(method=method, hidden=cfg.hidden, num_layers=cfg.num_layers, pe_features=cfg.pe_features,
                      mlp_features=cfg.mlp_features, atol=cfg.atol)


def evaluate(model, params, key, batch) -> dict[str, np.ndarray]:
    # Plain single-device arrays: the train loop's params are replicated over all processes' devices.
    params = distributed.local_copy(params)
    pred = jax.jit(lambda p, x, m, k: model.apply(p, x, m, rngs={"sympe": k}))(
        params, batch["points"], batch["mask"], key)
    err = data.relative_errors(np.asarray(pred, np.float64), batch["targets"].astype(np.float64), batch["mask"])
    return {"loss": err, "pred": np.asarray(pred)}


def summarize(cfg: Config, loss: np.ndarray, shape: np.ndarray) -> dict:
    rel = np.sqrt(loss)
    res = {"loss": float(loss.mean()), "solved": float((rel < cfg.solved_tol).mean()),
           "median_relative_error": float(np.median(rel)), "per_shape": {}}
    for i, name in enumerate(data.SHAPE_NAMES):
        sel = shape == i
        res["per_shape"][name] = {"n": int(sel.sum()), "loss": float(loss[sel].mean()),
                                  "solved": float((rel[sel] < cfg.solved_tol).mean()), "floor": data.FLOORS[name]}
    return res


def figure_instances() -> dict[str, np.ndarray]:
    """One fixed instance of each of three shapes, unrotated (for the figure)."""
    out = []
    for name in ("cube", "hexagon", "square_pyramid"):
        rng = np.random.default_rng([7, data.SHAPE_NAMES.index(name)])
        out.append(data.sample(rng, 1, shapes=(name,)))
    batch = {k: np.concatenate([b[k] for b in out]) for k in out[0]}
    batch["names"] = np.array(["cube", "hexagon", "square_pyramid"])
    return batch


def _say(*args) -> None:
    """``print`` (flushed) in process 0 only."""
    if distributed.is_main():
        print(*args, flush=True)


def run_one(cfg: Config, method: str, seed: int, force: bool = False, root: pathlib.Path = ROOT,
            out_dir: pathlib.Path | None = None) -> dict:
    out_dir = common.results_dir(root, "symmetric_shapes", cfg) if out_dir is None else out_dir
    out_path, old = common.finished_run(out_dir, cfg, method, seed, force)
    if old is not None:
        return old
    model = make_model(cfg, method)
    key = jax.random.key(seed)
    k_init, k_pe, k_train = jax.random.split(key, 3)
    x0 = jnp.zeros((1, data.N_MAX, 3)).at[0, :4].set(jnp.eye(4, 3))
    params = jax.jit(model.init)({"params": k_init, "sympe": k_pe}, x0, jnp.ones((1, data.N_MAX), bool))

    def loss_fn(p, batch, k):
        pred = model.apply(p, batch["points"], batch["mask"], rngs={"sympe": k})
        loss = data.relative_errors(pred, batch["targets"], batch["mask"])
        return jnp.mean(loss), {"solved": jnp.mean(jnp.sqrt(loss) < cfg.solved_tol)}

    def rows(i: int, index: int, count: int) -> dict:   # pure in (i, index, count): exact resume
        b = data.sample(np.random.default_rng([seed, i]), cfg.batch_size)   # the global batch of step i
        local = distributed.local_rows(cfg.batch_size, index, count)        # process `index`'s block of it
        return {k: b[k][local] for k in ("points", "mask", "targets")}

    batch_fn = distributed.per_process(rows)

    val = data.sample(np.random.default_rng([cfg.eval_seed, 1]), 128)

    def eval_fn(p, k):
        ev = evaluate(model, p, k, val)
        return {"val_loss": float(ev["loss"].mean()),
                "val_solved": float((np.sqrt(ev["loss"]) < cfg.solved_tol).mean())}

    tcfg = training.TrainConfig(num_steps=cfg.num_steps, eval_every=max(cfg.num_steps // 4, 1),
                                checkpoint_every=cfg.checkpoint_every, log_every=50, progress=True)
    optimizer = training.make_optimizer(cfg.learning_rate, cfg.num_steps, warmup_steps=cfg.warmup_steps,
                                        clip_norm=cfg.clip_norm)
    workdir = common.run_workdir(root, "symmetric_shapes", cfg, method, seed, force=force)
    _say(f"[{method} seed {seed}] training {cfg.num_steps} steps (workdir {workdir.relative_to(root)})")
    result = training.train(tcfg, loss_fn=loss_fn, params=params, optimizer=optimizer, batch_fn=batch_fn,
                            key=k_train, workdir=workdir, eval_fn=eval_fn)
    train_time = result.wall_time_s
    test = data.sample(np.random.default_rng([cfg.eval_seed, 0]), cfg.num_eval)
    ev = evaluate(model, result.params, jax.random.key(cfg.eval_seed + 2), test)
    fig = figure_instances()
    fev = evaluate(model, result.params, jax.random.key(cfg.eval_seed + 3), fig)
    # predictions in the template's frame and order: undo scale, rotation and the point order
    preds = []
    for i in range(len(fig["names"])):
        n = int(fig["mask"][i].sum())
        p = np.zeros((n, 3))
        p[fig["order"][i][:n]] = fev["pred"][i][:n] @ fig["rotation"][i] / fig["scale"][i]
        preds.append(p.tolist())
    record = {
        "method": method, "label": LABELS[method], "seed": seed, "config": dataclasses.asdict(cfg),
        "test": summarize(cfg, ev["loss"], test["shape"]),
        "figure": {"names": fig["names"].tolist(), "pred": preds, "loss": fev["loss"].tolist()},
        "train_wall_time_s": round(train_time, 1), "steps_per_second": result.steps_per_second,
        "resumed_from": result.resumed_from,
        "num_params": int(sum(x.size for x in jax.tree_util.tree_leaves(result.params))),
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "device": jax.devices()[0].platform,
    }
    if jax.process_count() > 1:
        record["process_count"] = jax.process_count()
    if distributed.is_main():
        training.save_json(out_path, record)
    t = record["test"]
    _say(f"[{method} seed {seed}] loss {t['loss']:.4f} solved {t['solved']:.3f} | {train_time:.0f}s")
    return record


def aggregate(cfg: Config, records: list[dict], command: str) -> dict:
    floor = float(np.mean([data.FLOORS[n] for n in data.SHAPE_NAMES]))
    rows = {}
    for method in cfg.encodings:
        rs = [r for r in records if r["method"] == method]
        rows[method] = {"label": LABELS[method], "seeds": [r["seed"] for r in rs],
                        "train_wall_time_s": [r["train_wall_time_s"] for r in rs],
                        "loss": [r["test"]["loss"] for r in rs], "solved": [r["test"]["solved"] for r in rs],
                        "per_shape_solved": {n: [r["test"]["per_shape"][n]["solved"] for r in rs]
                                             for n in data.SHAPE_NAMES},
                        "per_shape_loss": {n: [r["test"]["per_shape"][n]["loss"] for r in rs] for n in data.SHAPE_NAMES}}
    test_floor = records[0]["test"]["per_shape"]
    weighted = sum(v["n"] * v["floor"] for v in test_floor.values()) / sum(v["n"] for v in test_floor.values())
    return {"preset": cfg.preset, "command": command, "config": dataclasses.asdict(cfg), "seeds": list(cfg.seeds),
            "methods": list(cfg.encodings), "num_eval": cfg.num_eval, "solved_tol": cfg.solved_tol, "rows": rows,
            "floors": data.FLOORS, "floor_mean_over_shapes": floor, "floor_test_set": weighted}


def plot_predictions(records: list[dict], methods: tuple[str, ...], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = common.lowest_seed_records(records, "method")
    methods = [m for m in methods if m in first]
    names = first[methods[0]]["figure"]["names"]
    fig, axes = plt.subplots(len(names), len(methods) + 1, figsize=(2.6 * (len(methods) + 1), 2.6 * len(names)),
                             constrained_layout=True)
    for i, name in enumerate(names):
        pts, vertex = data.TEMPLATES[name]
        proj = (lambda a: a[:, :2]) if name == "hexagon" else (lambda a: a @ np.array([[1, 0], [0.35, 0.25], [0, 1.0]]))
        panels = [("target (one of |G| answers)", data.target(name), None)] + [
            (LABELS[m].replace("E(3)-equivariant net, ", ""), np.asarray(first[m]["figure"]["pred"][i]),
             first[m]["figure"]["loss"][i]) for m in methods]
        for j, (title, disp, loss) in enumerate(panels):
            ax = axes[i, j]
            p = proj(pts)
            d = proj(disp)
            ax.scatter(p[:, 0], p[:, 1], s=12, c="k")
            ax.quiver(p[:, 0], p[:, 1], d[:, 0], d[:, 1], angles="xy", scale_units="xy", scale=1, color="C3", width=0.012)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(-2, 2)
            ax.set_ylim(-2, 2)
            ax.set_title(title if i == 0 else "", fontsize=7)
            if loss is not None:
                ax.text(0.02, 0.02, f"loss {loss:.2f}", transform=ax.transAxes, fontsize=7)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(f"Predicted displacements (red) on unrotated test shapes, seed {min(r['seed'] for r in records)}",
                 fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def parse_args(argv=None):
    return common.parse_config(Config, PRESETS, argv, doc=__doc__, choices={"encodings": tuple(METHODS)},
                               prog="python -m experiments.symmetric_shapes")


@distributed.fail_fast
@rundir.exit_on_run_error
def main(argv=None) -> int:
    cfg, args = parse_args(argv)
    distributed.initialize(args.distributed)
    command = common.command_line("symmetric_shapes", argv)
    _say(f"Symmetric shapes, preset {cfg.preset}: {cfg.num_steps} steps, methods {cfg.encodings}, seeds {cfg.seeds}")
    t0 = time.time()
    out_dir = common.results_dir(ROOT, "symmetric_shapes", cfg)
    cfg, records, _ = common.collect_records(cfg, args, out_dir, lambda m, s: run_one(cfg, m, s, args.force),
                                             names="encodings", field="method")
    if not distributed.is_main():   # process 0 writes the summary and the figure
        return 0
    summary = aggregate(cfg, records, command)
    summary["wall_time_s"] = round(time.time() - t0, 1)
    summary["runs_train_wall_time_s"] = round(sum(r["train_wall_time_s"] for r in records), 1)
    prefix = common.summary_prefix(cfg.preset)
    training.save_json(out_dir / f"{prefix}summary.json", summary)
    plot_predictions(records, cfg.encodings, out_dir / f"{prefix}predictions.png")
    print(f"\nfloor of a symmetry-preserving model: {summary['floor_test_set']:.4f} (test set)")
    print("method | test loss | solved")
    for m in cfg.encodings:
        r = summary["rows"][m]
        print(f"{m:10s} | {np.mean(r['loss']):.4f} ± {np.std(r['loss']):.4f} | {np.mean(r['solved']):.3f} ± "
              f"{np.std(r['solved']):.3f}")
    print(f"wrote {out_dir / (prefix + 'summary.json')} ({summary['wall_time_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
