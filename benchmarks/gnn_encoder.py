"""Training-step time of the graph autoencoder: factored messages against the concatenated MLP.

``sympe_jax.nn.mpnn.MPNNEncoder`` computes every message ``MLP_m([u_i, u_j, e_ij])`` with
``mpnn.EdgeMLP``, which applies the first layer to the N nodes before gathering them onto the E
edges. The textbook form concatenates ``[u_i, u_j, e_ij]`` per edge and applies the first layer
to the E rows. Both have the same parameters and compute the same function (checked here: same
loss on the same parameters); this script times one full training step of
``python -m experiments.graph_autoencoder`` (encoding, encoder, decoder, BCE, backward, Adam) for both
forms, side by side in one process, for each message graph (edges, all pairs) and batch size
(16: the cpu preset, 1: the paper preset).

The modes are timed in alternation (``--rounds`` rounds of ``--reps`` steps each, the order
reversed every other round) and the speed-up is the median over rounds of the per-round ratio
``t(concat) / t(factored)``. Run it on an idle machine; the ratios suffer less from other load
than the absolute times.

    python -m benchmarks.gnn_encoder              # row sympe, batches 16 and 1, both message graphs
    python -m benchmarks.gnn_encoder --quick      # a few steps (smoke test)

Writes results/benchmarks/gnn_encoder.json (``--quick``: gnn_encoder_quick.json).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sympe_jax.nn import mpnn

from benchmarks.digress_step import _environment, _stats
from experiments._lib.train import save_json
from experiments.graph_autoencoder import data as erdos_renyi
from experiments.graph_autoencoder import main as ga
from experiments.graph_autoencoder import models

ROOT = pathlib.Path(__file__).resolve().parents[1]

MODES = ("factored", "concat")


class ConcatEdgeMLP(mpnn.MLP):
    """The textbook message MLP: ``mpnn.MLP`` on the concatenated ``[u[receivers], u[senders], e]``
    (same parameter names and shapes as ``mpnn.EdgeMLP``)."""

    def __call__(self, u, receivers, senders, edges=None):
        return super().__call__(jnp.concatenate([u[receivers], u[senders]] + ([] if edges is None else [edges]),
                                                axis=-1))


@contextlib.contextmanager
def message_mlp(mode: str):
    """Within the block, ``MPNNEncoder`` builds its messages with the MLP of ``mode``. Everything
    that traces the model (init, the first call of a jitted function) must run inside it; later
    calls of an already compiled function reuse its trace."""
    factored = mpnn.EdgeMLP
    mpnn.EdgeMLP = {"factored": factored, "concat": ConcatEdgeMLP}[mode]   # read by MPNNEncoder when traced
    try:
        yield
    finally:
        mpnn.EdgeMLP = factored


def _step_fn(cfg: ga.Config, row: str):
    """(init, jitted training step, jitted loss, optimizer) of the experiment's model."""
    forward, init = ga.build(cfg, row)
    opt = optax.adam(cfg.learning_rate)

    def loss(params, batch, ranks, key):
        logits, pairs = forward(params, key, batch, ranks)
        return models.reconstruction_loss(logits, batch.adjacency, pairs)

    def step(params, opt_state, batch, ranks, key):
        value, grads = jax.value_and_grad(loss)(params, batch, ranks, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return jax.jit(init), jax.jit(step, donate_argnums=(0, 1)), jax.jit(loss), opt


def _flops(fn, *args) -> float | None:
    """XLA's FLOP count of the compiled ``fn(*args)`` (None where the backend gives none)."""
    cost = fn.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def measure(a: argparse.Namespace) -> dict:
    train = ga.load_splits(ga.PRESETS["cpu"])[0]
    out = {}
    for message_graph in a.message_graphs:
        for batch_size in a.batch_sizes:
            cfg = dataclasses.replace(ga.PRESETS["cpu"], batch_size=batch_size, message_graph=message_graph)
            n_edge = erdos_renyi.max_edges_per_batch(list(train), batch_size, complete=message_graph == "complete")
            batcher = ga.make_batcher(train, cfg, n_edge)
            batches = [jax.device_put(batcher.batch_at(i, 0)) for i in range(8)]
            ranks = jnp.tile(jnp.arange(cfg.n_max, dtype=jnp.int32), (batch_size, 1))
            state, losses, flops = {}, {}, {}
            for mode in MODES:
                init, step, loss, opt = _step_fn(cfg, a.row)
                with message_mlp(mode):   # traces and compiles init, loss and step
                    params = init(jax.random.key(0), batches[0])
                    losses[mode] = float(loss(params, batches[0], ranks, jax.random.key(1)))
                    opt_state = opt.init(params)
                    flops[mode] = _flops(step, params, opt_state, batches[0], ranks, jax.random.key(0))
                    for i in range(max(a.warmup, 1)):
                        params, opt_state, value = step(params, opt_state, batches[i % 8], ranks,
                                                        jax.random.key(i))
                    jax.block_until_ready(value)
                state[mode] = [step, params, opt_state]
            times = {m: [] for m in MODES}
            counter = 0
            for r in range(a.rounds):
                for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                    step, params, opt_state = state[mode]
                    t0 = time.perf_counter()
                    for _ in range(a.reps):
                        counter += 1
                        params, opt_state, value = step(params, opt_state, batches[counter % 8], ranks,
                                                        jax.random.key(counter))
                    jax.block_until_ready((params, value))
                    times[mode].append((time.perf_counter() - t0) / a.reps)
                    state[mode][1:] = [params, opt_state]
            ratios = [c / f for c, f in zip(times["concat"], times["factored"])]
            key = f"{message_graph}/batch{batch_size}"
            out[key] = {
                "message_graph": message_graph, "batch_size": batch_size, "edge_budget": int(n_edge),
                "node_slots": int(batches[0].graph.n_node.sum()),
                "initial_loss": losses, "xla_flops_per_step": flops, "loss_abs_diff": abs(losses["factored"] - losses["concat"]),
                **{m: _stats(times[m]) for m in MODES},
                "speedup_concat_over_factored": {"median": float(np.median(ratios)), "min": float(np.min(ratios)),
                                                 "max": float(np.max(ratios)), "per_round": ratios},
            }
            print(f"  {key:18s} E={n_edge:5d}: factored {np.median(times['factored']) * 1e3:7.2f} ms/step, "
                  f"concat {np.median(times['concat']) * 1e3:7.2f} ms/step -> speed-up x{np.median(ratios):.2f} "
                  f"(rounds {np.min(ratios):.2f}..{np.max(ratios):.2f}); XLA flops {flops}; "
                  f"|loss diff| {out[key]['loss_abs_diff']:.2e}",
                  flush=True)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.gnn_encoder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", default="sympe", choices=ga.ROWS + ga.EXTRA_ROWS)
    p.add_argument("--batch-sizes", default="16,1")
    p.add_argument("--message-graphs", default="edges,complete")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="2 rounds of 3 steps (smoke test)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.batch_sizes = [int(b) for b in a.batch_sizes.split(",")]
    a.message_graphs = a.message_graphs.split(",")
    bad = set(a.message_graphs) - set(ga.MESSAGE_GRAPHS)
    if bad or any(b < 1 for b in a.batch_sizes):
        p.error(f"message graphs must be among {ga.MESSAGE_GRAPHS} and batch sizes positive")
    if a.quick:
        a.rounds, a.reps, a.warmup = 2, 3, 1
    name = "gnn_encoder_quick.json" if a.quick else "gnn_encoder.json"
    out = pathlib.Path(a.out or ROOT / "results" / "benchmarks" / name)
    print(f"Graph AE step benchmark: row {a.row}, load average {os.getloadavg()}", flush=True)
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("  WARNING: the machine is not idle; absolute times are unreliable (ratios less so)", flush=True)
    env_start = _environment()
    result = {"command": "python -m benchmarks.gnn_encoder " + " ".join(argv), "row": a.row,
              "rounds": a.rounds, "reps": a.reps, "runs": measure(a),
              "environment": {"start": env_start, "end": _environment()}}
    save_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
