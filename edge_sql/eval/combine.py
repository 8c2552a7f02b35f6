"""``edgesql eval --combine``: the reports of a sharded run (``--shard K/N`` on N machines) read back and merged
into the report one run over all the questions would have written: the same records in the same order, so the same
EX, hardness table and predictions; the wall time is the shards' sum, the peak memory their largest."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from edge_sql.errors import UsageError
from edge_sql.eval.report import Outcome, Record, Report, Speed, measure_speed
from edge_sql.remedies import Remedies
from edge_sql.steps.generate import Sampling

#: What every shard of one run must share.
SAME = ("dataset", "model", "sampling", "remedies", "merge_model")


def read_report(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError:
        raise UsageError(f"{path} is not an eval report (not JSON)") from None
    if not isinstance(data, dict) or "records" not in data or "dataset" not in data:
        raise UsageError(f"{path} is not an eval report (written by edgesql eval --report)")
    return data


def same_run(value, key: str):
    """What must be equal between shards: the dataset less the shard's own slice."""
    return {k: v for k, v in value.items() if k not in ("shard", "selected")} if key == "dataset" else value


def record_from_dict(item: dict) -> Record:
    outcomes = tuple(Outcome(**{f.name: answer[f.name] for f in fields(Outcome) if f.name in answer})
                     for answer in item.get("answers", ()))
    return Record(index=item["index"], db_id=item["db_id"], question=item["question"], gold=item["gold"],
                  hardness=item.get("hardness"), outcomes=outcomes, skipped=item.get("skipped"),
                  error=item.get("error"), seconds=item.get("seconds", 0.0), tokens=item.get("tokens") or {},
                  costs=item.get("costs") or {}, gold_empty=item.get("gold_empty"), kind=item.get("kind"))


def combine(paths: list[Path]) -> Report:
    """Merge the reports of ``--shard 1/N`` … ``--shard N/N`` of one run; :class:`UsageError` when they are not
    that (another run's report, a shard missing or given twice, an interrupted shard)."""
    if not paths:
        raise UsageError("--combine needs the shard reports to merge, e.g. edgesql eval --combine part*.json")
    parts = [(path, read_report(path)) for path in paths]
    first_path, first = parts[0]
    total = (first["dataset"].get("shard") or {}).get("of")
    seen: dict[int, Path] = {}
    for path, data in parts:
        for key in SAME:
            if same_run(data.get(key), key) != same_run(first.get(key), key):
                raise UsageError(f"{path} and {first_path} are reports of different runs (their {key} differ)")
        shard = data["dataset"].get("shard")
        if not shard or shard.get("of") != total:
            raise UsageError(f"{path} is not a shard of the same --shard K/{total or 'N'} run")
        if shard["k"] in seen:
            raise UsageError(f"shard {shard['k']}/{total} is given twice: {seen[shard['k']]} and {path}")
        if data.get("interrupted"):
            raise UsageError(f"{path} is an interrupted shard: run --shard {shard['k']}/{total} again")
        seen[shard["k"]] = path
    missing = sorted(set(range(1, total + 1)) - set(seen))
    if missing:
        raise UsageError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{k}/{total}' for k in missing)} "
                         f"missing: run edgesql eval --shard K/{total} for {'them' if len(missing) > 1 else 'it'}")
    ordered = [data for _, data in sorted(((d["dataset"]["shard"]["k"], d) for _, d in parts), key=lambda x: x[0])]
    records = tuple(record_from_dict(item) for data in ordered for item in data["records"])
    selection = {k: v for k, v in first["dataset"].items() if k not in ("path", "layout", "metric", "shard")}
    selection.update(selected=sum(data["dataset"]["selected"] for data in ordered), shard=None)
    sampling, remedies = first["sampling"], first["remedies"]
    peaks = [data["peak_rss_mib"] for data in ordered if data.get("peak_rss_mib") is not None]
    return Report(
        dataset=first["dataset"]["path"], layout=first["dataset"]["layout"], metric=first["dataset"]["metric"],
        model=first["model"], counts=tuple(r["candidates"] for r in first["results"]),
        sampling=Sampling(candidates=sampling["candidates"], temperature=sampling["temperature"],
                          seed=sampling["seed"], max_tokens=sampling["max_tokens"],
                          early_stop=sampling.get("early_stop", False)),
        selection=selection, records=records, wall_seconds=round(sum(d["wall_seconds"] for d in ordered), 2),
        peak_rss_mib=max(peaks) if peaks else None, speed=measure_speed(list(records)) if records else Speed(),
        remedies=Remedies(**remedies), merge_model=first.get("merge_model"),
    )
