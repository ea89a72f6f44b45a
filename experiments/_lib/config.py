"""What every experiment shares: config presets on the command line, run directories, result files."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import shutil
from typing import Any, Callable, Mapping, Sequence

from experiments._lib import distributed, rundir


# Fields that choose which runs to do, not how one run goes: adding a seed or an encoding (or
# reordering them) must neither retrain nor orphan the runs already done. ``encodings`` is the
# field's name in every experiment; ``rows`` and ``methods`` are its old names, which the configs
# recorded in result files written before the rename still carry.
SELECTION_FIELDS = ("encodings", "rows", "methods", "seeds")

# Presets whose results are scratch (a demo, a smoke test): written under ``runs/``, never ``results/``.
SCRATCH_PRESETS = ("demo", "smoke")


def option(default: Any, help: str, *, aliases: tuple[str, ...] = ()) -> Any:
    """A config field with its ``--help`` line (and old flag names ``aliases``, e.g. ``("--rows",)``)."""
    return dataclasses.field(default=default, metadata={"help": help, "aliases": tuple(aliases)})


def field_help(config_cls: type) -> dict[str, str]:
    """``{field name: help line}`` of a config dataclass (``""`` for a field declared without one)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(config_cls)}


def is_scratch(preset: str) -> bool:
    """Whether a config's preset (``<preset>`` or ``<preset>-<tag>``) is a demo or smoke run: the
    ``demo``/``smoke`` presets, and any ``--tag`` starting with ``demo`` or ``smoke``."""
    base, _, tag = preset.partition("-")
    return base in SCRATCH_PRESETS or tag.startswith(SCRATCH_PRESETS)


def results_dir(root, experiment: str, cfg: Any) -> pathlib.Path:
    """Where an experiment writes its result files and summary: ``<root>/results/<experiment>``, or
    for a scratch config (:func:`is_scratch`) the git-ignored ``<root>/runs/<experiment>/results``."""
    root = pathlib.Path(root)
    if is_scratch(cfg.preset):
        return root / "runs" / experiment / "results"
    return root / "results" / experiment


def run_workdir(root, experiment: str, cfg: Any, name: str, seed: int, *, force: bool = False,
                eval_fields: tuple[str, ...] = ()) -> pathlib.Path:
    """One run's directory (checkpoints, metrics log):
    ``<root>/runs/<experiment>/<run_dir_name(cfg, eval_fields)>/<name>_seed<seed>``.

    ``force`` (``--force``) deletes it first, so the run trains again from scratch: it never
    resumes from (or only re-evaluates) the checkpoints of an earlier run. It takes the run
    directory's lock to do so: a directory in use by another run raises
    :class:`~experiments._lib.rundir.RunDirLocked` and is left alone. With several processes,
    process 0 deletes and every process returns after it (call it from every process).
    """
    workdir = pathlib.Path(root) / "runs" / experiment / run_dir_name(cfg, eval_fields) / f"{name}_seed{seed}"
    if force and distributed.is_main() and workdir.exists():
        with rundir.lock(workdir):
            print(f"[{name} seed {seed}] --force: deleting {workdir}", flush=True)
            shutil.rmtree(workdir)
    distributed.barrier(f"run directory of {name} seed {seed}")
    return workdir


def run_config(cfg: Any, ignore: tuple[str, ...] = (), late_defaults: Mapping[str, Any] | None = None) -> dict:
    """The config as JSON data, without the selection fields (and ``ignore``): what identifies one run.

    ``late_defaults`` (default: the config class's ``LATE_DEFAULTS``, a ``ClassVar`` dict) names
    fields added after runs were recorded, with the value those runs implicitly had: a field at
    that value is left out, so adding it changes neither old runs' identity nor their directory.
    """
    if late_defaults is None:
        late_defaults = getattr(cfg, "LATE_DEFAULTS", {})
    data = json.loads(json.dumps(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg))
    return {k: v for k, v in data.items() if k not in SELECTION_FIELDS and k not in ignore
            and not (k in late_defaults and v == late_defaults[k])}


def same_run_config(recorded: Any, cfg: Any, ignore: tuple[str, ...] = ()) -> bool:
    """Whether a result file's recorded config describes a run of ``cfg`` (selection fields and
    ``ignore`` aside; ``cfg``'s ``LATE_DEFAULTS`` apply to both)."""
    late = getattr(cfg, "LATE_DEFAULTS", {})
    return isinstance(recorded, dict) and run_config(recorded, ignore, late) == run_config(cfg, ignore, late)


def run_dir_name(cfg: Any, eval_fields: tuple[str, ...] = ()) -> str:
    """``<preset>-<hash of the run config>``: runs of different configs never share checkpoints.

    ``eval_fields`` name fields that only change the evaluation after training: runs that differ
    only there share their checkpoints, so changing them evaluates the trained model again
    instead of retraining it.
    """
    digest = hashlib.sha256(json.dumps(run_config(cfg, eval_fields), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.preset}-{digest}"


def _type_name(annotation: Any) -> str:
    """``"int"``, ``"tuple[str, ...]"``, ...: a field's annotation as written (string or type)."""
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def parse_config(config_cls: type, presets: Mapping[str, Any], argv=None, *, doc: str | None = None,
                 choices: Mapping[str, tuple[str, ...]] | None = None,
                 parents: Sequence[argparse.ArgumentParser] = (),
                 prog: str | None = None) -> tuple[Any, argparse.Namespace]:
    """``--preset NAME`` plus one ``--field-name VALUE`` flag per config field (tuples comma-separated).

    ``doc`` is the ``--help`` description (the script's docstring) and ``prog`` the command in its
    usage line (e.g. ``"python -m experiments.ising"``); ``parents`` are argparse parents
    (``add_help=False``) whose flags ``--help`` lists too (a script parsing some flags of its own
    first). ``choices`` maps tuple fields to their allowed values (checked with a
    clear error).
    ``--tag NAME`` names a variant: the config's preset becomes ``<preset>-<NAME>``, so its
    result files, summary and run directories never overwrite the preset's own.
    ``--distributed`` / ``--no-distributed`` (``args.distributed``: True, False, or None when
    not given, i.e. auto-detect) is for the script to pass to
    :func:`experiments._lib.distributed.initialize`; it is not a config field.
    Each field's ``--help`` line is its ``metadata["help"]`` (declare fields with :func:`option`),
    followed by the first preset's value; ``metadata["aliases"]`` adds old flag names. ``bool``
    fields take ``--name`` / ``--no-name``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc, parents=list(parents),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default=next(iter(presets)),
                        help="named configuration to start from (default: %(default)s); flags override its fields")
    parser.add_argument("--force", action="store_true",
                        help="delete this config's run directories (checkpoints) and retrain every selected run, "
                             "even if its result file exists; never resumes")
    parser.add_argument("--summarize-only", action="store_true",
                        help="train nothing: summarize the result files of this config that exist")
    parser.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                        help="join a multi-process run (jax.distributed); default: only when the environment "
                             "says so (python -m experiments.launch, SLURM srun, a multi-host TPU slice)")
    parser.add_argument("--tag", default=None,
                        help="variant name: results and runs are written under <preset>-<tag> (letters, digits, -); "
                             "a tag starting with demo or smoke writes its results under runs/, not results/")
    fields = [f for f in dataclasses.fields(config_cls) if f.name != "preset"]
    types = {f.name: _type_name(f.type) for f in fields}
    base = presets[next(iter(presets))]
    for field in fields:
        flags = ["--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ())]
        text = field.metadata.get("help", "")
        allowed = (choices or {}).get(field.name)
        if allowed:
            text += f" (from: {','.join(allowed)})"
        default = getattr(base, field.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{text} [{next(iter(presets))}: {shown}]".replace("%", "%%")
        kind = types[field.name]
        if kind.startswith("tuple"):
            parser.add_argument(*flags, dest=field.name, type=str, default=None, metavar="A,B,...", help=text)
        elif kind == "bool":
            parser.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        else:
            parser.add_argument(*flags, dest=field.name, type={"int": int, "float": float, "str": str}[kind],
                                default=None, help=text)
    args = parser.parse_args(argv)
    overrides = {}
    for field in fields:
        value = getattr(args, field.name)
        if value is None:
            continue
        if types[field.name].startswith("tuple"):
            conv = str if "str" in types[field.name] else int
            value = tuple(conv(v) for v in value.split(","))
        overrides[field.name] = value
    if args.tag is not None:
        if not args.tag or not all(c.isalnum() or c == "-" for c in args.tag):
            parser.error(f"--tag must be letters, digits and '-', got {args.tag!r}")
        overrides["preset"] = f"{args.preset}-{args.tag}"
    cfg = dataclasses.replace(presets[args.preset], **overrides)
    for name, allowed in (choices or {}).items():
        bad = set(getattr(cfg, name)) - set(allowed)
        if bad:
            parser.error(f"unknown {name} {sorted(bad)}; choose from {allowed}")
    return cfg, args


def summary_prefix(preset: str) -> str:
    """File-name prefix of a preset's summary and figures: none for ``cpu`` (the preset the README
    reads), ``<preset>_`` for every other one, so a ``paper`` or tagged run never replaces them."""
    return "" if preset == "cpu" else f"{preset}_"


def result_path(results_dir, cfg: Any, name: str, seed: int) -> pathlib.Path:
    """Where one run's result file lives: ``<results_dir>/<preset>_<name>_seed<seed>.json``."""
    return pathlib.Path(results_dir) / f"{cfg.preset}_{name}_seed{seed}.json"


def matching_record(path, cfg: Any) -> dict | None:
    """The result file at ``path`` if it exists and was written by a run of ``cfg``, else None."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if same_run_config(record.get("config"), cfg) else None


def finished_run(results_dir, cfg: Any, name: str, seed: int, force: bool = False) -> tuple[pathlib.Path, dict | None]:
    """``(result path, its record)`` of one run; the record is None when the run must (re)run:
    no result file of this config yet, or ``force``. Says so when it skips. With several
    processes, all skip or all run (a record only one process sees is None everywhere)."""
    path = result_path(results_dir, cfg, name, seed)
    old = None if force else matching_record(path, cfg)
    if not distributed.all_ok(old is not None):
        old = None
    if old is not None and distributed.is_main():
        print(f"[{name} seed {seed}] result exists, skipping ({path.name})", flush=True)
    return path, old


def existing_records(results_dir, cfg: Any, names: tuple[str, ...], field: str) -> list[dict]:
    """Per-run result files ``<preset>_<name>_seed<k>.json`` written with exactly this config.

    ``field`` is the record key holding the name (``"row"`` or ``"method"``).
    """
    out = []
    for seed in cfg.seeds:
        for name in names:
            record = matching_record(result_path(results_dir, cfg, name, seed), cfg)
            if record is not None and record.get(field) == name:
                out.append(record)
    return out


def lowest_seed_records(records: list[dict], field: str) -> dict[str, dict]:
    """For each row/method name (``record[field]``), its record with the lowest seed (for figures)."""
    out: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: -r["seed"]):
        out[record[field]] = record
    return out


def collect_records(cfg: Any, args, results_dir, run: Callable[[str, int], dict], *,
                    names: str = "encodings", field: str = "row") -> tuple[Any, list[dict], bool]:
    """Run (or with ``--summarize-only`` just read) every (name, seed) of ``cfg``.

    ``run(name, seed)`` trains one run, or returns its result when it exists. ``names`` is the
    config's tuple field of row names, ``field`` the record key holding one. Returns the config
    narrowed to the names that have records, the records, and whether every requested
    (name, seed) is among them.
    """
    requested = getattr(cfg, names)
    if args.summarize_only:
        records = existing_records(results_dir, cfg, requested, field)
        if not records:
            raise SystemExit("no result files for this config yet")
    else:
        records = [run(name, seed) for seed in cfg.seeds for name in requested]
    present = tuple(n for n in requested if any(r[field] == n for r in records))
    complete = present == tuple(requested) and len(records) == len(requested) * len(cfg.seeds)
    return dataclasses.replace(cfg, **{names: present}), records, complete


def command_line(module: str, argv=None) -> str:
    """The command that regenerates a run's results: ``python -m experiments.<module> <flags>``
    (``module`` e.g. ``"ising"`` or ``"digress_qm9.sampling"``), without the flags that only
    change what is (re)done now or where (``--summarize-only``, ``--force``, ``--distributed``)."""
    import sys
    flags = [a for a in (sys.argv[1:] if argv is None else argv)
             if a not in ("--summarize-only", "--force", "--distributed", "--no-distributed")]
    return " ".join(["python", "-m", f"experiments.{module}", *flags])
