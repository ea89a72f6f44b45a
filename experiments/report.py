"""Render the result sections of README.md and docs/ from the result files under ``results/``.

Each section sits between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in one of
:data:`TARGETS` (the README's summary table, one docs page per experiment, docs/benchmarks.md)
and is regenerated from its result files; nothing in those sections is typed by hand.

    python -m experiments.report          # rewrite the stale files in place
    python -m experiments.report --check  # exit 1 if a file is out of date (writes nothing)
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from typing import Callable

from experiments._lib import config as common

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
# Result files written before the experiments became packages record script commands
# (``python experiments/ising.py ...``); they are shown as the module command that runs the same
# code now (``python -m experiments.ising ...``). Scripts whose module is not their path:
_MOVED_SCRIPTS = {"experiments/graph_autoencoder_entropy.py": "experiments.graph_autoencoder.entropy",
                  "experiments/digress_sampling.py": "experiments.digress_qm9.sampling"}


def _load(path: pathlib.Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _command(command: str) -> str:
    """A recorded command, with ``python experiments/<name>.py`` (or ``benchmarks/``) scripts as
    the ``python -m`` module commands that replace them."""
    def module(match: re.Match) -> str:
        path = match.group(1)
        return "python -m " + _MOVED_SCRIPTS.get(path, path.removesuffix(".py").replace("/", "."))
    return re.sub(r"python ((?:experiments|benchmarks)/\w+\.py)", module, command)


def canonicalization_section() -> str | None:
    md = RESULTS / "benchmarks" / "canonicalization.md"
    return _command(md.read_text().strip()) if md.exists() else None


def _fmt(mean: float, spread: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (as NumPy's ``std``) of per-seed values."""
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def ising_section() -> str | None:
    return _ising_tables("summary.json", "phase_diagram.png", "boundary.json")


def ising_l16_section() -> str | None:
    return _ising_tables("cpu-l16s5k_summary.json", "cpu-l16s5k_phase_diagram.png", "cpu-l16s5k_boundary.json")


def _ising_boundary_table(summary: dict, boundary_name: str) -> list[str]:
    """Solved share of the plane's Hamiltonians per margin bin (results/ising/<boundary_name>),
    when that analysis was run with the summary's config."""
    b = _load(RESULTS / "ising" / boundary_name)
    if b is None or not b["runs"] or any(summary["config"].get(k) != v for k, v in b["config"].items()):
        return []                     # not run, or run with another config than the summary's
    edges = b["bins"]
    names = [f"[{lo:g}, {hi})" if hi != "inf" else f">= {lo:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    counts = [x["count"] for x in b["runs"][0]["bins"]]
    lines = ["", f"Where the misses lie (command: `{_command(b['command'])}`): the share solved of the same plane "
             "Hamiltonians, by their margin (energy per site by which the ground state's ordered state beats the "
             "next best one; 0 on a phase boundary), each seed; the bin's number of Hamiltonians in brackets.", "",
             "| method | " + " | ".join(f"margin {n} ({c})" for n, c in zip(names, counts)) + " |",
             "|---|" + "---|" * len(names)]
    labels = {m: summary["rows"][m]["label"] for m in summary["methods"]}
    for m in summary["methods"]:
        runs = sorted((r for r in b["runs"] if r["method"] == m), key=lambda r: r["seed"])
        if runs:
            cells = [", ".join(f"{r['bins'][i]['solved']:.2f}" for r in runs) for i in range(len(names))]
            lines.append(f"| {labels[m]} | " + " | ".join(cells) + " |")
    return lines


def _ising_tables(summary_name: str, figure_name: str, boundary_name: str) -> str | None:
    """The tables of one Ising summary (results/ising/<summary_name>), its boundary analysis and
    its phase diagram."""
    summary = _load(RESULTS / "ising" / summary_name)
    if summary is None:
        return None
    n = len(summary["seeds"])
    seeds = f"{n} seeds: mean ± std over seeds" if n > 1 else "1 seed"
    lines = [f"Preset `{summary['preset']}` (L = {summary['config']['L']}, {summary['config']['num_steps']} steps, "
             f"{summary['config']['batch_size']} Hamiltonians per step, {seeds}). Command: `{_command(summary['command'])}`. "
             f"Gap = energy per site above the exact ground state e_min, on {summary['num_eval']} held-out "
             "Hamiltonians from the paper's law; solved = gap < 1e-6; sampled = spins drawn from the "
             "model's product law, argmax = sign of the logits.", "",
             "| method | gap, sampled | gap, argmax | solved, argmax | stripe gap, argmax | stripe solved, argmax | ferro solved, argmax |",
             "|---|---|---|---|---|---|---|"]
    for m in summary["methods"]:
        r = summary["rows"][m]
        lines.append(f"| {r['label']} | {_fmt(*r['gap_sampled'])} | {_fmt(*r['gap_argmax'])} | "
                     f"{_fmt(*r['solved_argmax'], 2)} | {_fmt(*r['stripe_gap_argmax'])} | "
                     f"{_fmt(*r['stripe_solved_argmax'], 2)} | {_fmt(*r['ferro_solved_argmax'], 2)} |")
    if "plane_antiferro_solved_argmax" in summary["rows"][summary["methods"][0]]:
        lines += ["", f"Every phase, on {summary['num_eval']} held-out Hamiltonians uniform on the (J_x, J_y) "
                  "plane (h ~ U(0, 2); the paper's law never yields the checkerboard) and on the "
                  f"{summary['config']['grid_n']} x {summary['config']['grid_n']} phase grid at "
                  f"h = {summary['config']['grid_h']}: share solved by the most likely configuration, "
                  "each seed.", "",
                  "| method | grid solved, per seed | ferromagnetic | antiferromagnetic | row stripes | column stripes |",
                  "|---|---|---|---|---|---|"]
        for m in summary["methods"]:
            r = summary["rows"][m]
            phases = " | ".join(", ".join(f"{v:.2f}" for v in r[f"plane_{p}_solved_argmax"])
                                for p in ("ferro", "antiferro", "row_stripes", "column_stripes"))
            lines.append(f"| {r['label']} | {', '.join(f'{v:.3f}' for v in r['grid_solved_argmax'])} | {phases} |")
    lines += _ising_boundary_table(summary, boundary_name)
    lines += ["", f"![Ising phase diagram](results/ising/{figure_name})"]
    return "\n".join(lines)


def ising_ablation_section() -> str | None:
    summary = _load(RESULTS / "ising" / "ablation.json")
    if summary is None:
        return None
    base = summary["base"]
    lines = [f"SymPE alone, {base['num_steps']} steps unless the variant says otherwise, L = {base['L']}; one change "
             f"at a time against the `cpu` preset as it was before the fix (G-CNN widths {base['features']}, "
             f"{base['pe_features']} SymPE channels, {base['batch_size']} Hamiltonians per step, peak learning rate "
             f"{base['learning_rate']}, the expected energy as the loss throughout). Command: "
             f"`{summary['command']}`. Grid: share of the phase grid solved, each seed; the phases: share of the "
             "plane test set's Hamiltonians of that phase solved, each seed (stripes: the mean of the row and "
             "column phases).", "",
             "| variant | change | grid solved | ferromagnetic solved | antiferromagnetic solved | stripes solved |",
             "|---|---|---|---|---|---|"]
    seeds = lambda vals: ", ".join(f"{v:.2f}" for v in vals)
    for name, r in summary["variants"].items():
        stripes = [(a + b) / 2 for a, b in zip(r["plane_row_stripes_solved_argmax"], r["plane_column_stripes_solved_argmax"])]
        lines.append(f"| `{name}` | {r['description']} | {seeds(r['grid_solved_argmax'])} | "
                     f"{seeds(r['plane_ferro_solved_argmax'])} | {seeds(r['plane_antiferro_solved_argmax'])} | {seeds(stripes)} |")
    lines += ["", "![Ising ablation](results/ising/ablation.png)"]
    return "\n".join(lines)


def graph_autoencoder_section() -> str | None:
    summary = _load(RESULTS / "graph_autoencoder" / "summary.json")
    if summary is None:
        return None
    cfg = summary["config"]
    partial = "" if summary.get("complete", True) else (
        "**Partial: the run has not finished every row and seed; the seeds column says what each row "
        "holds.** ")
    lines = [f"{partial}Preset `{summary['preset']}`: {cfg['num_steps']} steps of batch {cfg['batch_size']} "
             f"(lr {cfg['learning_rate']}, cosine), mean ± std over seeds, test set of "
             f"{cfg['num_test']} ER graphs, parameters at the best validation BCE. "
             f"Command: `{_command(summary['command'])}`.", "",
             "| method | seeds | edge error % (ours) | F1 (ours) | train-subset edge error % | edge error % (paper) |",
             "|---|---|---|---|---|---|"]
    on_demand = summary.get("on_demand", [])
    for row in summary["order"] + on_demand:
        r = summary["rows"][row]
        paper = "-" if r["paper"] is None else f"{r['paper']}"
        cell = (lambda v, d: _fmt(*v, d)) if len(r["seeds"]) > 1 else (lambda v, d: f"{v[0]:.{d}f}")  # no spread of 1
        mark = " (on demand)" if row in on_demand else ""
        lines.append(f"| {r['label']}{mark} | {len(r['seeds'])} | {cell(r['edge_error_pct'], 2)} | {cell(r['f1'], 4)} | "
                     f"{cell(r['train_edge_error_pct'], 2)} | {paper} |")
    if on_demand:
        lines += ["", "Rows marked *on demand* are our own ablations, outside the preset, at its budget and seeds: "
                  f"`{_command(summary['command'])} --rows {','.join(on_demand)}`."]
    floor = summary["wl_floor"]
    ties = summary["tie_orbit_agreement"]
    lines += ["", f"Exact 1-WL floor of any model without symmetry breaking on this test set: "
              f"{floor['floor_percent']:.2f}% for a decoder that depends only on the colours of the pair, "
              f"{floor['floor_percent_distance_decoder']:.2f}% for the distance decoder (same-colour pairs share "
              f"a latent); {floor['num_not_fully_refined']} of {floor['num_graphs']} graphs are not fully refined "
              "by colour refinement.",
              f"SymPE's fixed spectral score ties exactly the automorphism orbits on {ties['ties_equal_orbits']} of "
              f"{ties['graphs']} test graphs ({ties['tied_non_automorphic_pair_pct']:.3f}% of node pairs tied "
              "without being automorphic" + _tied_nodes(ties) + ")."]
    lines += _learned_scorer_lines(summary, ties)
    free = summary.get("free_embedding")
    if free:
        lines += [f"The distance decoder itself is not the limit: free {free['latent']}-dimensional latents fitted per "
                  f"graph (no encoder, best of {free['restarts']} starts) reconstruct the {free['graphs']} test graphs "
                  f"with {free['edge_error_pct']:.2f}% edge error ({free['graphs_with_errors']} graphs with any error), "
                  "so the errors above are the encoder's."]
    lines += ["",
              "![reconstructions](results/graph_autoencoder/reconstructions.png)",
              "![learning curves](results/graph_autoencoder/learning_curves.png)"]
    return "\n".join(lines)


def _learned_scorer_lines(summary: dict, ties: dict) -> list[str]:
    """What training the ``sympe_learned`` row's scorer did (per seed), when that row has results."""
    row = summary["rows"].get("sympe_learned")
    if not row or "scorer" not in row:
        return []
    sc, seeds = row["scorer"], ", ".join(str(s) for s in row["seeds"])
    per_seed = lambda key, fmt: ", ".join(format(x, fmt) for x in sc[key])
    fixed = summary["rows"].get("sympe")
    versus = "" if fixed is None else f" (fixed scorer: {_fmt(*fixed['edge_error_pct'], 2)})"
    return [f"The learned scorer (`sympe_learned`, seeds {seeds}) trains: the loss gradient in its parameters "
            f"on the first training batch is {per_seed('grad_norm_init', '.3g')} at initialization and "
            f"{per_seed('grad_norm_trained', '.3g')} at the selected parameters (through the sort alone it is "
            f"exactly 0). Training re-ranks {per_seed('test_nodes_rank_changed_pct', '.1f')}% of test nodes; its "
            f"ties equal the orbits on {per_seed('ties_equal_orbits', 'd')} of {ties['graphs']} test graphs "
            f"({per_seed('tied_node_pct', '.1f')}% of nodes tied; fixed score: {ties['ties_equal_orbits']}, "
            f"{ties.get('tied_node_pct', float('nan')):.1f}%). Test edge error "
            f"{_fmt(*row['edge_error_pct'], 2)}{versus}."]


def _tied_nodes(ties: dict | None) -> str:
    """Clause on the nodes left to the random tie-break (summaries written before it was recorded have none)."""
    if not ties or "tied_node_pct" not in ties:
        return ""
    out = (f"; {ties['tied_node_pct']:.1f}% of nodes are in a tie group, {ties['automorphic_node_pct']:.1f}% have "
           "an automorphic twin")
    bits = ties.get("ordering_entropy_bits")
    if bits:
        out += (f"; the node ordering carries {bits['sympe']:.2f} bits of randomness per test graph with SymPE's "
                f"tie-break, {bits['exact']:.2f} with the exact kernel (log2 |Aut|) and {bits['randperm']:.1f} with "
                "a uniform permutation")
    return out


def _autoencoder_base(summary: dict) -> dict:
    """The ``cpu`` preset's run config (selection fields aside), against which variants are compared."""
    return {k: v for k, v in summary["config"].items() if k not in ("preset", *common.SELECTION_FIELDS)}


def _changed_from(cfg: dict, base: dict) -> dict:
    """The fields of a record's config that differ from ``base``. Fields a record lacks were added to
    the config later, at the value such runs had, so they count as unchanged."""
    return {k: v for k, v in cfg.items() if k in base and v != base[k]}


def graph_autoencoder_variants_section() -> str | None:
    """Runs of other configurations (``--tag`` variants, other presets), one line per configuration
    and row (mean ± std over its seeds), beside the cpu preset's runs of the same row and seeds."""
    summary = _load(RESULTS / "graph_autoencoder" / "summary.json")
    paths = sorted(p for p in (RESULTS / "graph_autoencoder").glob("*_seed*.json") if not p.name.startswith("cpu_"))
    if summary is None or not paths:
        return None
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in paths:
        rec = _load(path)
        groups.setdefault((rec["config"]["preset"], rec["row"]), []).append(rec)
    base = _autoencoder_base(summary)
    lines = ["| configuration | changed from `cpu` | command | row | seeds | test edge error % (per seed) | "
             "train-subset % | `cpu` preset, same row and seeds | test nodes in a SymPE tie group % (tie-break entropy per graph) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (_, row), recs in groups.items():
        recs.sort(key=lambda r: r["seed"])
        cfg = recs[0]["config"]
        seeds = [r["seed"] for r in recs]
        changed = _changed_from(cfg, base)
        preset, _, tag = cfg["preset"].partition("-")
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in changed.items())
        command = (f"python -m experiments.graph_autoencoder --preset {preset}" + (f" --tag {tag}" if tag else "")
                   + (f" {flags}" if flags and tag else "") + f" --rows {row} --seeds {','.join(map(str, seeds))}")
        refs = [_load(RESULTS / "graph_autoencoder" / f"cpu_{row}_seed{seed}.json") for seed in seeds]
        ref = "-" if None in refs else _seed_cell([r["test"]["edge_error_pct"] for r in refs], per_seed=False)
        lines.append(f"| `{cfg['preset']}` | {', '.join(f'{k} = {v}' for k, v in changed.items()) or '-'} | "
                     f"`{command}` | {row} | {', '.join(map(str, seeds))} | "
                     f"{_seed_cell([r['test']['edge_error_pct'] for r in recs])} | "
                     f"{_seed_cell([r['train_subset']['edge_error_pct'] for r in recs], per_seed=False)} | "
                     f"{ref} | {_variant_ties(recs[0])} |")
    return "\n".join(lines)


def graph_autoencoder_latent_section() -> str | None:
    """The latent-size sweep behind the ``cpu`` preset: runs whose config differs from the preset's
    only in ``latent`` (``--tag``), best validation BCE and test error per latent and row, and the
    latent with the lowest mean validation BCE over the rows and seeds run at every latent."""
    summary = _load(RESULTS / "graph_autoencoder" / "summary.json")
    if summary is None:
        return None
    base = _autoencoder_base(summary)
    runs: dict[tuple[str, int], dict[int, dict]] = {}     # (row, latent) -> {seed: record}
    for path in sorted((RESULTS / "graph_autoencoder").glob("*_seed*.json")):
        rec = _load(path)
        cfg = rec["config"]
        if set(_changed_from(cfg, base)) - {"latent"}:
            continue
        runs.setdefault((rec["row"], cfg["latent"]), {})[rec["seed"]] = rec
    latents = sorted({lat for _, lat in runs})
    rows = [r for r in summary["order"] if all((r, lat) in runs for lat in latents)]
    if len(latents) < 2 or not rows:
        return None
    seeds = sorted(set.intersection(*(set(runs[r, lat]) for r in rows for lat in latents)))
    lines = [f"Rows run at every latent size, {base['num_steps']} steps (everything else as the preset); "
             f"the preset uses latent {base['latent']}.", "",
             "| row | " + " | ".join(f"latent {lat}: val BCE, test error % (seeds)" for lat in latents) + " |",
             "|---|" + "---|" * len(latents)]
    for r in rows:
        cells = []
        for lat in latents:
            recs = [runs[r, lat][s] for s in sorted(runs[r, lat])]
            bce = sum(x["best_val"]["val_bce"] for x in recs) / len(recs)
            cells.append(f"{bce:.4f}, {_seed_cell([x['test']['edge_error_pct'] for x in recs], per_seed=False)} "
                         f"({', '.join(str(x['seed']) for x in recs)})")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    if seeds:
        mean = {lat: sum(runs[r, lat][s]["best_val"]["val_bce"] for r in rows for s in seeds) / (len(rows) * len(seeds))
                for lat in latents}
        best = min(mean, key=mean.get)
        lines += ["", f"Mean best validation BCE over these rows, seed{'s' if len(seeds) > 1 else ''} "
                  f"{', '.join(map(str, seeds))}: " + ", ".join(f"latent {lat}: {mean[lat]:.4f}" for lat in latents)
                  + f". Lowest: latent {best}" + (" (the preset's)." if best == base["latent"] else
                                                  f", not the preset's {base['latent']}.")]
    return "\n".join(lines)


def graph_autoencoder_entropy_section() -> str | None:
    """Test error against the randomness of the node ordering (``experiments.graph_autoencoder.entropy``)."""
    study = _load(RESULTS / "graph_autoencoder" / "cpu-entropy.json")
    if study is None:
        return None
    lines = [f"{study['num_steps']} steps, configurations {', '.join(f'`cpu-{t}`' for t in study['tags'])} "
             f"(the variants above). Command: `{_command(study['command'])}`.", "",
             "| configuration | row | ordering entropy (bits per test graph) | seeds | test edge error % (per seed) | "
             "train-subset % |", "|---|---|---|---|---|---|"]
    for r in sorted(study["rows"], key=lambda r: (r["ordering_entropy_bits"] is not None,
                                                 r["ordering_entropy_bits"] or 0.0, r["row"])):
        bits = "- (no ordering)" if r["ordering_entropy_bits"] is None else f"{r['ordering_entropy_bits']:.2f}"
        lines.append(f"| `{r['configuration']}` | {r['label']} | {bits} | {', '.join(map(str, r['seeds']))} | "
                     f"{_seed_cell(r['per_seed_test_edge_error_pct'])} | {r['train_edge_error_pct'][0]:.2f} |")
    lines += ["", "![error against ordering entropy](results/graph_autoencoder/cpu-entropy.png)"]
    return "\n".join(lines)


def _seed_cell(values: list[float], per_seed: bool = True) -> str:
    """'1.23' for one seed; 'mean ± std (v0, v1, ...)' (population std, as the summaries) for several."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return _fmt(mean, std, 2) + (f" ({', '.join(f'{v:.2f}' for v in values)})" if per_seed else "")


def _variant_ties(rec: dict) -> str:
    """Tied-node % of the SymPE score at a sympe-row variant's tolerance, from its summary file."""
    if not rec["row"].startswith("sympe"):
        return "-"
    preset = rec["config"]["preset"]
    summary = _load(RESULTS / "graph_autoencoder" / f"{common.summary_prefix(preset)}summary.json")
    ties = (summary or {}).get("tie_orbit_agreement") or {}
    if "tied_node_pct" not in ties:
        return "-"
    bits = ties.get("ordering_entropy_bits")
    return f"{ties['tied_node_pct']:.1f}" + (f" ({bits['sympe']:.2f} bits)" if bits else "")


def _frac(entry) -> str:
    return "-" if entry is None else (f"{entry[0]:.3f}" if entry[1] == 0 else _fmt(*entry))


def _frac3(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def digress_section() -> str | None:
    summary = _load(RESULTS / "digress_qm9" / "summary.json")
    if summary is None:
        return None
    cfg = summary["config"]
    want = set(summary["seeds"])
    short = [r for r in summary["rows"].values() if not r.get("control") and set(r["seeds"]) != want]
    control_seeds = sorted({s for r in summary["rows"].values() if r.get("control") for s in r["seeds"]})
    partial = "" if summary.get("complete", True) else (
        "**Partial: not every row and seed has finished; the seeds column says what each row holds.** "
        if short or not control_seeds else
        f"Every method row holds seeds {', '.join(map(str, sorted(want)))}; the leak controls were trained on "
        f"seed{'s' if len(control_seeds) > 1 else ''} {', '.join(map(str, control_seeds))} only. ")
    counts = {len(r["seeds"]) for r in summary["rows"].values()}
    if counts == {1}:
        spread = "one seed, so ± is the standard error of the mean over test molecules, not a seed spread"
    elif 1 in counts:
        spread = ("± = std over seeds for rows with several seeds; for one-seed rows, the standard error of the "
                  "mean over test molecules")
    else:
        spread = "± = std over seeds"
    lines = [f"{partial}Preset `{summary['preset']}`: {cfg['num_train'] or 'all'} training molecules, "
             f"{cfg['n_layers']} layers (dx {cfg['dx']}), T = {cfg['T']}, {cfg['num_steps']} steps of batch "
             f"{cfg['batch_size']}; test NLL (nats per molecule, {cfg['num_test'] or 'all'} test molecules; "
             f"{spread}); metrics on {cfg['num_samples']} samples. Command: `{_command(summary['command'])}`. "
             "The paper's NLLs are at its own (full) budget and T = 500, so only the ordering compares. "
             "The paired difference uses the same t and z_t per molecule in every row (± = its standard error).", "",
             "| method | seeds | test NLL (ours; per seed) | NLL minus first row, paired by molecule | validity (per seed) | "
             "relaxed validity | uniqueness | novelty | train time (s) | test NLL (paper) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order_rows = [row for row in summary["order"] if "order" in summary["rows"][row]]
    for row in summary["order"]:
        r = summary["rows"][row]
        nll = r["nll"] if len(r["seeds"]) > 1 else [r["nll"][0], r["nll_sem_within_seed"]]
        paper = "-" if r["paper_nll"] is None else f"{r['paper_nll']}"
        diff = "-" if "nll_minus_baseline" not in r else _fmt(*r["nll_minus_baseline"], 2)
        if len(r["seeds"]) > 1 and "per_seed_validity" in r:     # mixed seed counts: show every seed
            per = lambda xs, d: " (" + ", ".join(f"{x:.{d}f}" for x in xs) + ")"  # noqa: E731
            nll_cell = _fmt(*nll, 2) + per(r["per_seed_nll"], 2)
            validity_cell = _frac(r["validity"]) + per(r["per_seed_validity"], 3)
        else:
            nll_cell, validity_cell = _fmt(*nll, 2), _frac(r["validity"])
        seeds_cell = ", ".join(str(x) for x in r["seeds"])
        lines.append(f"| {r['label']} | {seeds_cell} | {nll_cell} | {diff} | {validity_cell} | "
                     f"{_frac(r['relaxed_validity'])} | {_frac(r['uniqueness'])} | {_frac(r['novelty'])} | "
                     f"{r['train_wall_time_s']:.0f} | {paper} |")
    paired = summary.get("paired_nll_differences", {})
    if paired:
        labels = {row: summary["rows"][row]["label"] for row in summary["order"]}
        lines += ["", "Test NLL differences paired by molecule (mean ± standard error, nats): " + "; ".join(
            f"{labels[a]} − {labels[b]}: {_fmt(*v, 2)}"
            for a, b, v in ((*k.split(" - "), v) for k, v in paired.items())) + "."]
    per_seed = {k: v for k, v in summary.get("paired_nll_differences_per_seed", {}).items() if len(v) > 1}
    if per_seed:
        labels = {row: summary["rows"][row]["label"] for row in summary["order"]}
        lines += ["", "Per training seed (a check that a difference survives retraining, which the standard errors "
                  "above do not include): " + "; ".join(
                      f"{labels[a]} − {labels[b]}: " + ", ".join(f"seed {s} {_fmt(*d, 2)}" for s, d in v.items())
                      for a, b, v in ((*k.split(" - "), v) for k, v in per_seed.items())) + "."]
    ties = summary.get("ties", {})
    if ties:
        lines += ["", "Ties of the SymPE score (nodes left for the random tie-break): " + "; ".join(
            f"{name}: {t['with_ties_fraction']:.1%} of molecules, {t['tied_nodes_per_molecule']:.2f} of "
            f"{t['nodes_per_molecule']:.2f} nodes per molecule" for name, t in ties.items()) + "."]
    if order_rows:
        lines += ["", *_digress_order_table(summary, order_rows)]
    controls = [summary["rows"][row]["label"] for row in summary["order"] if summary["rows"][row].get("control")]
    if controls:
        lines += ["", "Rows labelled *leak control* are invalid or non-equivariant on purpose, not methods: "
                  "they measure how much NLL a denoiser gains from information a valid equivariant one lacks. "
                  "The clean-graph control has no clean graph when sampling, so its samples sort the noisy graph "
                  "as SymPE does: its sample metrics are those of the leak-trained model without the leak."]
    for row in summary["order"]:
        if "scorer" in summary["rows"][row]:
            lines += ["", _digress_scorer_line(summary["rows"][row])]
    lines += ["", "![samples](results/digress_qm9/samples.png)"]
    return "\n".join(lines)


def _digress_order_table(summary: dict, rows: list[str]) -> list[str]:
    """The order diagnostic of the DiGress rows that have one (``rows[row]["order"]`` of the summary):
    NLL in dataset atom order, with every test molecule's nodes permuted, and the difference paired
    by molecule; rows without one (result files older than the diagnostic) are left out."""
    preset = summary["preset"]
    lines = ["Order diagnostic: the test NLL in the dataset's atom order and with each test molecule's nodes "
             "permuted at random (a fixed key per molecule), with the same t, z_t and z_0 per molecule in both "
             "(drawn in dataset order, then permuted with the molecule). A denoiser that is equivariant in law "
             "gives a difference of 0 within its standard error; one that reads the node order does not. "
             "± of the difference: standard error over molecules (pooled over the seeds shown).", "",
             "| method | seeds (run) | NLL, dataset order | NLL, nodes permuted | permuted − dataset, paired by molecule |",
             "|---|---|---|---|---|"]
    for row in rows:
        r, o = summary["rows"][row], summary["rows"][row]["order"]
        runs = ", ".join(f"`{p}`" for p in o["presets"] if p != preset)
        seeds = ", ".join(str(x) for x in o["seeds"]) + (f" ({runs}: retrained, same config)" if runs else "")
        cell = (lambda v: f"{v[0]:.2f}") if len(o["seeds"]) == 1 else (lambda v: _fmt(*v, 2))
        lines.append(f"| {r['label']} | {seeds} | {cell(o['nll_dataset'])} | {cell(o['nll_permuted'])} | "
                     f"{_fmt(*o['difference'], 3)} |")
    return lines


def _digress_scorer_line(r: dict) -> str:
    """The learned scorer's diagnostics of a DiGress row, per seed (as the graph autoencoder's)."""
    sc = r["scorer"]
    per = lambda xs, f: ", ".join(f.format(x) for x in xs)  # noqa: E731
    parts = [f"gradient norm in the scorer at initialisation {per(sc['grad_norm_init'], '{:.2g}')}, after training "
             f"{per(sc['grad_norm_trained'], '{:.2g}')}"]
    for when, name in (("clean", "clean test molecules"), ("t_half", "test molecules noised to t = T/2")):
        if when in sc:
            w = sc[when]
            parts.append(f"{name}: nodes re-ranked against the fixed score {per(w['test_nodes_rank_changed_pct'], '{:.1f}%')}; "
                         f"ties equal to the typed automorphism orbits in {per(w['ties_equal_orbits_fraction_learned'], '{:.1%}')} "
                         f"of graphs (fixed score {per(w['ties_equal_orbits_fraction_fixed'], '{:.1%}')}); tied nodes "
                         f"{per(w['tied_node_pct_learned'], '{:.1f}%')} (fixed {per(w['tied_node_pct_fixed'], '{:.1f}%')}, "
                         f"automorphic {per(w['automorphic_node_pct'], '{:.1f}%')})")
    return f"Learned scorer ({r['label']}; seeds {', '.join(map(str, sc['seeds']))}): " + "; ".join(parts) + "."


_DIGRESS_DETERMINISTIC = ("digress", "sympe_index_ties", "index_pe")   # rows whose denoiser draws no randomness


def digress_sampling_section() -> str | None:
    study = _load(RESULTS / "digress_qm9" / "cpu_sampling.json")
    if study is None:
        return None
    labels = {"step": "redrawn at every reverse step", "trajectory": "drawn once per trajectory"}
    lines = [f"Command: `{_command(study['command'])}` ({study['num_samples']} samples per row, model key and seed; "
             f"seeds {study['seeds']}). Same sampling key for every entry of a seed: node counts, G_T and transition noise "
             "are shared, so differences are paired by sample. ± = binomial standard error.", "",
             "| row | model randomness (g~ tie-breaks, noise channels) | seeds | samples | validity | relaxed validity | "
             "uniqueness | novelty |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in study["pooled"].items():
        row, mk = name.split("/")
        lines.append(f"| {row} | {labels[mk] if row not in _DIGRESS_DETERMINISTIC else 'none'} | "
                     f"{', '.join(str(x) for x in e['seeds'])} | {e['num_samples']} | "
                     f"{_fmt(e['validity'], e['validity_se'])} | {_frac3(e['relaxed_validity'])} | "
                     f"{_frac3(e['uniqueness'])} | {_frac3(e['novelty'])} |")
    base = next(iter(study["pooled"]))
    diffs = [(k, v) for k, v in study["paired_validity_differences"].items() if k.endswith(" - " + base)]
    if diffs:
        lines += ["", f"Validity minus `{base}`, paired by sample over the seeds both have (mean ± standard error): "
                  + "; ".join(
            f"`{k.split(' - ')[0]}` {_fmt(*v)}" for k, v in diffs) + "."]
    within = [(k, v) for k, v in study["paired_validity_differences"].items()
              if k.split(" - ")[0].split("/")[0] == k.split(" - ")[1].split("/")[0]]
    if within:
        lines += ["", "Once per trajectory minus at every step, same row: " + "; ".join(
            f"`{k.split('/')[0]}` {_fmt(*v, 4)}" for k, v in within) + "."]
    return "\n".join(lines)


def symmetric_shapes_section() -> str | None:
    summary = _load(RESULTS / "symmetric_shapes" / "summary.json")
    if summary is None:
        return None
    cfg = summary["config"]
    lines = [f"Preset `{summary['preset']}` ({cfg['num_steps']} steps of batch {cfg['batch_size']}, "
             f"{len(summary['seeds'])} seeds: mean ± std over seeds). Command: `{_command(summary['command'])}`. "
             f"Loss = min over the shape's point group of the relative squared error, on {summary['num_eval']} "
             f"test shapes; solved = relative error below {summary['solved_tol']}. "
             f"Floor of any symmetry-preserving model on this test set: {summary['floor_test_set']:.3f}.",
             "", "| method | test loss | solved | " + " | ".join(f"solved: {n}" for n in summary["floors"]) + " |",
             "|---|---|---|" + "---|" * len(summary["floors"])]
    for m in summary["methods"]:
        r = summary["rows"][m]
        per = " | ".join(f"{_mean_std(r['per_shape_solved'][n])[0]:.2f}" for n in summary["floors"])
        lines.append(f"| {r['label']} | {_fmt(*_mean_std(r['loss']))} | {_fmt(*_mean_std(r['solved']), digits=2)} | {per} |")
    lines += ["", "Exact floors per shape (1 - 1/m, m = the pushed vertex's orbit): " + ", ".join(
        f"{n} {f:.3f}" for n, f in summary["floors"].items()) + ".",
        "", "![Predicted displacements](results/symmetric_shapes/predictions.png)"]
    return "\n".join(lines)


def digress_step_section() -> str | None:
    bench = _load(RESULTS / "benchmarks" / "digress_step.json")
    if bench is None or not bench.get("runs"):
        return None
    lines = [f"Command: `{_command(bench.get('runs_command', bench['command']).strip())}`. Modes timed in alternation "
             "within one process; the ratio is the median over rounds of t(mode) / t(baseline) [min, max].", "",
             "| allocator | batch | mode | ms / step | molecules / s | ratio to baseline | load average (start, end) |",
             "|---|---|---|---|---|---|---|"]
    for label, run in bench["runs"].items():
        env = run["environment"]
        load = f"{env['start']['loadavg'][0]:.1f}, {env['end']['loadavg'][0]:.1f}"
        for batch, rows in run["train"].items():
            for mode, st in rows.items():
                ratio = next((v for k, v in st.items() if k.startswith("ratio_to_")), None)
                ratio_txt = "-" if ratio is None else f"{ratio['median']:.3f} [{ratio['min']:.3f}, {ratio['max']:.3f}]"
                lines.append(f"| {label} | {batch} | {mode} | {st['median_s'] * 1e3:.0f} | {st['molecules_per_s']:.1f} | "
                             f"{ratio_txt} | {load} |")
    lines += ["", "Sampling (reverse steps timed, scaled to T = 500):", "",
              "| allocator | mode | ms / reverse step | molecules / s at T = 500 | ratio to baseline |",
              "|---|---|---|---|---|"]
    for label, run in bench["runs"].items():
        for mode, st in run["sampling"].items():
            ratio = next((v for k, v in st.items() if k.startswith("ratio_to_")), None)
            lines.append(f"| {label} (batch {st['batch']}) | {mode} | {st['per_step_s'] * 1e3:.0f} | "
                         f"{st['molecules_per_s_extrapolated']:.2f} | {'-' if ratio is None else f'{ratio:.3f}'} |")
    return "\n".join(lines)


def _reference_command(command: str) -> str:
    """A benchmark's recorded command with the reference's paths (the machine's, not the
    repository's) shown as DIR and PY."""
    return re.sub(r"(--reference(?:-python)?) \S+", lambda m: f"{m.group(1)} {'PY' if 'python' in m.group(1) else 'DIR'}",
                  _command(command.strip()))


def digress_reference_section() -> str | None:
    bench = _load(RESULTS / "benchmarks" / "digress_step.json")
    ref = None if bench is None else bench.get("reference")
    if ref is None:
        return None if bench is None else "_This result file holds no same-run measurement of the PyTorch reference._"
    sides = ref["sides"][1:]
    lim = ref["matmul_gflops"]
    command = _reference_command(bench.get("reference_command", bench["command"]))
    lines = [f"Command: `{command}` (reference commit {(ref.get('reference_commit') or '780242b')[:7]}, "
             f"torch {ref['versions']['reference']['torch']}, jax {ref['versions']['ours']['jax']}; {ref['threads']} threads "
             f"each, allocator {' '.join(f'{k}={v}' for k, v in ref['allocator'].items())}, reference "
             f"{' '.join(f'{k}={v}' for k, v in ref.get('reference_env', {}).items()) or 'default OpenMP settings'}). "
             f"Load average at the start and end: {ref['load_start'][0]:.1f}, {ref['load_end'][0]:.1f}. Measured float32 "
             f"matmul rate: XLA {lim['ours_xla']:.0f} GFLOP/s, torch {lim['reference_torch']:.0f} GFLOP/s. Ratios are "
             "t(reference) / t(ours) per alternation round, median [min, max]; above 1 means ours is faster.", "",
             "| configuration | ours (dropout_rng) | reference ms / step | ours ms / step | reference / ours | noise + features "
             "| forward | backward | optimizer | fraction of matmul rate (ref, ours) | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    rng = lambda r: f"{r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}]"  # noqa: E731
    for name, row in ref["configurations"].items():
        for side in sides:
            ph = row["phase_ratio_reference_over_ours"][side]
            frac = f"{row['reference']['fraction_of_matmul_limit']:.2f}, {row[side]['fraction_of_matmul_limit']:.2f}" \
                if row[side].get("fraction_of_matmul_limit") else "-"
            comp = row["compile"][side]
            lines.append(f"| {name} | {side.removeprefix('ours_')} | {row['reference']['median_s'] * 1e3:.0f} | "
                         f"{row[side]['median_s'] * 1e3:.0f} | {rng(row['ratio_reference_over_ours'][side])} | "
                         + " | ".join(rng(ph[p]) for p in ("noise_features", "forward", "backward", "optimizer"))
                         + f" | {frac} | {comp['lower_s'] + comp['compile_s']:.1f} |")
    if ref.get("memory"):
        lines += ["", "Peak resident memory of a fresh process that builds the model and runs two steps, GiB:", "",
                  "| configuration | " + " | ".join(["reference"] + [s.removeprefix("ours_") for s in sides]) + " |",
                  "|---|" + "---|" * (1 + len(sides))]
        for name, row in ref["memory"].items():
            cells = []
            for side in ["reference"] + sides:
                r = row.get(side, {})
                cells.append(f"{r['peak_rss_gib']:.2f}" if "peak_rss_gib" in r else "skipped (not enough memory)")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if ref.get("sampling"):
        lines += ["", "Sampling: one reverse step (denoiser, posterior, categorical draw) of the reference's "
                  "`sample_p_zs_given_zt` (eager, no autograd) against our jitted sampler, same run:", "",
                  "| configuration | reference ms / reverse step | ours ms / reverse step | reference / ours "
                  "| molecules / s at T = 500 (ref, ours) |", "|---|---|---|---|---|"]
        for name, row in ref["sampling"].items():
            r, o = row["reference"], row["ours"]
            lines.append(f"| {name} | {r['median_s'] * 1e3:.0f} | {o['median_s'] * 1e3:.0f} | "
                         f"{rng(row['ratio_reference_over_ours'])} | {row['batch'] / r['full_sampling_s_at_T500']:.2f}, "
                         f"{row['batch'] / o['full_sampling_s_at_T500']:.2f} |")
    return "\n".join(lines)


def graph_ae_step_section() -> str | None:
    bench = _load(RESULTS / "benchmarks" / "graph_ae_step.json")
    if bench is None:
        return None
    m = bench["measurement"]
    ref, cfg = m["reference"], m["config"]
    command = _reference_command(bench.get("reference_command", bench["command"]))
    models_ = list(ref["models"]) if ref else []
    versions = m["versions"]
    head = (f"Command: `{command}` (preset `{m['preset']}`: batch {cfg['batch_size']}, {cfg['message_graph']} message "
            f"graph, latent {cfg['latent']}; jax {versions['ours']['jax']}"
            + (f", torch {versions['reference']['torch']}, reference commit {(ref.get('commit') or 'e9ca6c0')[:7]}"
               if ref else "") +
            f"; {m['threads']} threads each, allocator "
            f"{' '.join(f'{k}={v}' for k, v in m['allocator'].items())}). Load average at the start and end: "
            f"{m['load_start'][0]:.1f}, {m['load_end'][0]:.1f}. Timed blocks of about {m['block_seconds']:.0f} s in "
            f"alternation, {m['rounds']} rounds; ms / update is the median over rounds.")
    if ref:
        head += (" Ratios are t(reference) / t(ours) per round, median [min, max]; above 1 means ours makes more "
                 "updates per second.")
    else:
        head += " _No reference was measured in this run._"
    lines = [head, "", "| row | updates per call (K) | ms / update | updates / s | compile + first call s | "
             + "".join(f"ours / reference `{model}` | " for model in models_)
             + f"projected `{m['preset']}` run, h (projection) |", "|---|---|---|---|---|" + "---|" * len(models_) + "---|"]
    for row, by_k in m["ours"].items():
        for k, e in by_k.items():
            proj = e["projection"]
            hours = proj.get("with_evaluations_h", proj["train_steps_h"])
            ratio = [f"{q['median']:.2f} [{q['min']:.2f}, {q['max']:.2f}]"
                     for q in (e["ratio_over_reference"][model] for model in models_)]
            lines.append("| " + " | ".join([row, k, f"{e['median_s'] * 1e3:.2f}", f"{e['steps_per_s']:.0f}",
                                            f"{e['compile_and_first_call_s']:.1f}", *ratio, f"{hours:.2f}"]) + " |")
    if ref:
        for model, e in ref["models"].items():
            lines.append("| " + " | ".join([f"reference `{model}`", "1", f"{e['median_s'] * 1e3:.2f}",
                                            f"{e['steps_per_s']:.0f}", "-", *["-"] * len(models_),
                                            f"{cfg['num_steps'] * e['median_s'] / 3600:.2f}"]) + " |")
    evals = {row: next(iter(by_k.values()))["projection"] for row, by_k in m["ours"].items()}
    timed = ", ".join(f"`{row}` {p['eval_s']:.2f} s" for row, p in evals.items() if "eval_s" in p)
    lines += ["", f"Projections, not measured runs: {cfg['num_steps']:,} updates at the rate above"
              + (f", plus {next(iter(evals.values()))['evaluations']} evaluations of the validation split for ours "
                 f"(one timed per row: {timed})" if timed else "")
              + "; the reference's updates alone (its evaluations are not timed)."]
    return "\n".join(lines)


def gnn_encoder_section() -> str | None:
    bench = _load(RESULTS / "benchmarks" / "gnn_encoder.json")
    if bench is None:
        return None
    env = bench["environment"]
    lines = [f"Command: `{_command(bench['command'].strip())}` (row `{bench['row']}`, one full training step of the "
             "experiment). Both forms timed in alternation within one process, the same parameters in both; "
             "speed-up = median over rounds of t(concat) / t(factored) [min, max]. Load average at the start "
             f"and end: {env['start']['loadavg'][0]:.1f}, {env['end']['loadavg'][0]:.1f}.", "",
             "| message graph | batch | edge slots | ms / step, factored | ms / step, concatenated | speed-up "
             "| XLA GFLOP / step (factored, concatenated) | loss difference |",
             "|---|---|---|---|---|---|---|---|"]
    for run in bench["runs"].values():
        sp, fl = run["speedup_concat_over_factored"], run["xla_flops_per_step"]
        flops = "-" if None in fl.values() else f"{fl['factored'] / 1e9:.3f}, {fl['concat'] / 1e9:.3f}"
        lines.append(f"| {run['message_graph']} | {run['batch_size']} | {run['edge_budget']} | "
                     f"{run['factored']['median_s'] * 1e3:.1f} | {run['concat']['median_s'] * 1e3:.1f} | "
                     f"{sp['median']:.2f} [{sp['min']:.2f}, {sp['max']:.2f}] | {flops} | {run['loss_abs_diff']:.1e} |")
    return "\n".join(lines)


def frames_section() -> str | None:
    bench = _load(RESULTS / "benchmarks" / "frames.json")
    if bench is None:
        return None
    env = bench["environment"]
    lines = [f"Command: `{_command(bench['command'].strip())}`. Batches of {bench['batch']} randomly moved clouds "
             f"(float32, atol {bench['atol']}), {bench['machine']}; medians of {bench['reps']} runs under "
             "`jit(vmap(...))` (NumPy loop: of fewer runs); the exact kernel is timed on the number of clouds "
             "shown and scaled to the batch. Ratios above 1 mean the point frame is faster. Load average at "
             f"the start and end: {env['start']['loadavg'][0]:.1f}, {env['end']['loadavg'][0]:.1f}.", "",
             "| clouds | n | point group order | point_frame (ms) | covariance_frame (ms) | haar_frame (ms) | NumPy loop (ms) "
             "| exact kernel (ms, clouds timed) | NumPy loop / point_frame | exact / point_frame |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in bench["rows"]:
        lines.append(f"| {r['label']} | {r['n']} | {', '.join(map(str, r['group_orders_found']))} | "
                     f"{r['point_frame_ms']:.2f} | {r['covariance_frame_ms']:.2f} | {r['haar_frame_ms']:.2f} | "
                     f"{r['numpy_loop_ms']:.1f} | {r['exact_kernel_ms_per_batch']:.0f} ({r['exact_clouds_timed']}) | "
                     f"{_ratio(r['numpy_loop_over_point_frame'])} | {_ratio(r['exact_over_point_frame'])} |")
    return "\n".join(lines)


def _ratio(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.2g}x"


def summary_section() -> str | None:
    """One table of the four experiments for the README: one line per method of each preset, our
    headline number beside the paper's, each experiment linking to its docs page."""
    lines = ["| experiment | method | ours | paper |", "|---|---|---|---|"]
    ising = _load(RESULTS / "ising" / "summary.json")
    if ising is not None:
        for m in ising["methods"]:
            r = ising["rows"][m]
            lines.append(f"| [Ising ground states](docs/ising.md): energy gap per site, argmax | {r['label']} | "
                         f"{_fmt(*r['gap_argmax'])} | - |")
    ae = _load(RESULTS / "graph_autoencoder" / "summary.json")
    if ae is not None:
        for row in ae["order"]:
            r = ae["rows"][row]
            ours = _fmt(*r["edge_error_pct"], 2) if len(r["seeds"]) > 1 else f"{r['edge_error_pct'][0]:.2f}"
            lines.append(f"| [Graph autoencoder](docs/graph_autoencoder.md): test edge error % | {r['label']} | "
                         f"{ours} | {'-' if r['paper'] is None else r['paper']} |")
    dg = _load(RESULTS / "digress_qm9" / "summary.json")
    dg_rows = []
    if dg is not None:
        methods = [dg["rows"][row] for row in dg["order"] if not dg["rows"][row].get("control")]  # not the leak controls
        full = max((len(r["seeds"]) for r in methods), default=0)
        dg_rows = [r for r in methods if len(r["seeds"]) == full]   # unfinished rows stay on their page
        for r in dg_rows:
            nll = r["nll"] if len(r["seeds"]) > 1 else [r["nll"][0], r["nll_sem_within_seed"]]
            lines.append(f"| [DiGress on QM9](docs/digress_qm9.md): test NLL, nats per molecule | {r['label']} | "
                         f"{_fmt(*nll, 2)} | {'-' if r['paper_nll'] is None else r['paper_nll']} |")
    sh = _load(RESULTS / "symmetric_shapes" / "summary.json")
    if sh is not None:
        for m in [m for m in sh["methods"] if m in ("none", "sympe", "mlp")]:   # the rest on its page
            r = sh["rows"][m]
            lines.append(f"| [Symmetric shapes, E(3)](docs/symmetric_shapes.md): test loss (min over point group) | "
                         f"{r['label']} | {_fmt(*_mean_std(r['loss']))} | - |")
    if len(lines) == 2:
        return None
    shown = [x for s in (ising, ae, sh) if s for x in s["rows"].values()] + dg_rows      # the rows above
    seeds = sorted({len(x["seeds"]) for x in shown})
    lines += ["", f"Mean ± std over {' or '.join(map(str, seeds))} seeds at our CPU presets; lower is better "
              "everywhere. The paper's numbers are at its own, larger budgets (DiGress: T = 500 against our 100), "
              "so the orderings compare, not the values; `-`: no paper number recorded for that row."]
    return "\n".join(lines)



def digress_profile_section() -> str | None:
    prof = _load(RESULTS / "benchmarks" / "digress_profile.json")
    if prof is None:
        return None
    sides = [s for s in ("reference", "ours") if all(s in e for e in prof["configurations"].values())]
    lines = [f"Command: `{_reference_command(prof['command'])}` ({prof['steps']} profiled steps per side, our dropout "
             f"`{prof['dropout_rng']}`; load average at the start {prof['load_start'][0]:.1f}, at the end "
             f"{prof['load_end'][0]:.1f}). Profiled time per step, ms, by pass and kind (profiler self times; XLA "
             "thunks of one step may overlap on the two threads, so a column's sum is a breakdown, not the step time).",
             ""]
    first = next(iter(prof["configurations"].values()))[sides[0]]["ms_per_step"]
    kinds_order = list(next(iter(first.values())))          # the kinds, in the benchmark's order
    lines += ["| configuration | side | step ms | pass | " + " | ".join(kinds_order) + " | total |",
              "|---" * (len(kinds_order) + 5) + "|"]
    for name, entry in prof["configurations"].items():
        for side in sides:
            res = entry[side]
            for pass_, kinds in res["ms_per_step"].items():
                cells = " | ".join(f"{kinds[k]:.0f}" for k in kinds_order)
                lines.append(f"| {name} | {side} | {res['wall_ms_per_step']:.0f} | {pass_} | {cells} | "
                             f"{sum(kinds.values()):.0f} |")
    if all("system_ms_per_step" in entry[s] for entry in prof["configurations"].values() for s in sides):
        lines += ["", "Process CPU time per step over an unprofiled block (`getrusage`; ms, and minor page faults):",
                  "", "| configuration | side | step ms | user CPU ms | system CPU ms | page faults |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {side} | {entry[side]['wall_ms_per_step']:.0f} | {entry[side]['user_ms_per_step']:.0f} | "
                  f"{entry[side]['system_ms_per_step']:.0f} | {entry[side]['minor_faults_per_step']:,.0f} |"
                  for name, entry in prof["configurations"].items() for side in sides]
    for name, entry in prof["configurations"].items():
        if "ours" in entry:
            top = ", ".join(f"{t['pass']} `{t['where'] or '(unnamed)'}` {t['ms_per_step']:.0f}"
                            for t in entry["ours"]["top"][:10])
            lines += ["", f"Largest model paths of ours at {name} (ms per step, all layers together): {top}."]
    return "\n".join(lines)


SECTIONS: dict[str, Callable[[], str | None]] = {
    "summary": summary_section,
    "canonicalization": canonicalization_section,
    "ising": ising_section,
    "ising_ablation": ising_ablation_section,
    "ising_l16": ising_l16_section,
    "graph_autoencoder": graph_autoencoder_section,
    "graph_autoencoder_variants": graph_autoencoder_variants_section,
    "graph_autoencoder_latent": graph_autoencoder_latent_section,
    "graph_autoencoder_entropy": graph_autoencoder_entropy_section,
    "gnn_encoder": gnn_encoder_section,
    "digress": digress_section,
    "digress_sampling": digress_sampling_section,
    "digress_step": digress_step_section,
    "digress_reference": digress_reference_section,
    "digress_profile": digress_profile_section,
    "graph_ae_step": graph_ae_step_section,
    "symmetric_shapes": symmetric_shapes_section,
    "frames": frames_section,
}


# The files with generated sections, relative to the repository root. Sections are written with
# links relative to the root; in docs/ they are rewritten relative to docs/.
TARGETS = ("README.md", "docs/ising.md", "docs/graph_autoencoder.md", "docs/digress_qm9.md", "docs/symmetric_shapes.md",
           "docs/benchmarks.md")


def _relink(body: str, prefix: str) -> str:
    """Links of a section rendered for a file ``prefix`` below the root (``"../"`` for docs/)."""
    if not prefix:
        return body
    body = re.sub(r"\]\(docs/", "](", body)
    return re.sub(r"\]\((results|examples|experiments|benchmarks|sympe_jax)/", rf"]({prefix}\1/", body)


def render(text: str, prefix: str = "") -> str:
    """``text`` with every marked section regenerated (``prefix``: the file's path up to the root)."""
    for name, fn in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(.*?)(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            continue
        body = fn()
        body = _relink(body, prefix) if body is not None else "_No result file yet: run the command above to produce it._"
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for target in TARGETS:
        path = ROOT / target
        if not path.exists():
            print(f"{target} is missing")
            stale.append(target)
            continue
        old = path.read_text()
        new = render(old, "../" * target.count("/"))
        if new == old:
            continue
        stale.append(target)
        if not args.check:
            path.write_text(new)
            print(f"updated {target}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}: run python -m experiments.report")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
