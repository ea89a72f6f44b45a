"""What every experiment script shares: config presets on the command line, run directories."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from typing import Any, Mapping


def run_dir_name(cfg: Any) -> str:
    """``<preset>-<hash of the config>``: runs of different configs never share checkpoints."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.preset}-{digest}"


def parse_config(config_cls: type, presets: Mapping[str, Any], argv=None, *, doc: str | None = None,
                 choices: Mapping[str, tuple[str, ...]] | None = None) -> tuple[Any, argparse.Namespace]:
    """``--preset NAME`` plus one ``--field-name VALUE`` flag per config field (tuples comma-separated).

    ``choices`` maps tuple fields to their allowed values (checked with a clear error).
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default=next(iter(presets)))
    parser.add_argument("--force", action="store_true", help="retrain even if a result file exists")
    parser.add_argument("--summarize-only", action="store_true",
                        help="train nothing: summarize the result files of this config that exist")
    fields = [f for f in dataclasses.fields(config_cls) if f.name != "preset"]
    for field in fields:
        flag = "--" + field.name.replace("_", "-")
        if field.type.startswith("tuple"):
            parser.add_argument(flag, type=str, default=None, help=f"comma-separated {field.name}")
        else:
            parser.add_argument(flag, type={"int": int, "float": float, "str": str}[field.type], default=None)
    args = parser.parse_args(argv)
    overrides = {}
    for field in fields:
        value = getattr(args, field.name)
        if value is None:
            continue
        if field.type.startswith("tuple"):
            conv = str if "str" in field.type else int
            value = tuple(conv(v) for v in value.split(","))
        overrides[field.name] = value
    cfg = dataclasses.replace(presets[args.preset], **overrides)
    for name, allowed in (choices or {}).items():
        bad = set(getattr(cfg, name)) - set(allowed)
        if bad:
            parser.error(f"unknown {name} {sorted(bad)}; choose from {allowed}")
    return cfg, args


def existing_records(results_dir, cfg: Any, names: tuple[str, ...], field: str) -> list[dict]:
    """Per-run result files ``<preset>_<name>_seed<k>.json`` written with exactly this config.

    ``field`` is the record key holding the name (``"row"`` or ``"method"``).
    """
    import pathlib

    cfg_dict = json.loads(json.dumps(dataclasses.asdict(cfg)))
    out = []
    for seed in cfg.seeds:
        for name in names:
            path = pathlib.Path(results_dir) / f"{cfg.preset}_{name}_seed{seed}.json"
            if path.exists():
                record = json.loads(path.read_text())
                if record.get("config") == cfg_dict and record.get(field) == name:
                    out.append(record)
    return out


def lowest_seed_records(records: list[dict], field: str) -> dict[str, dict]:
    """For each row/method name (``record[field]``), its record with the lowest seed (for figures)."""
    out: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: -r["seed"]):
        out[record[field]] = record
    return out
