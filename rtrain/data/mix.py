"""Build the training and evaluation sets from a data mix, with per-source statistics and a content hash.

Every distinct source path is tokenized once (:mod:`rtrain.data.tokenize`). ``data.eval_samples`` records are
held out from the union of usable records first (seeded), so every mix of the same data is evaluated on the same
held-out set. Then each mix source takes its records (filtered by ``where``):

* ``samples: N``: N samples; whole copies of the source while N exceeds it, then a seeded draw for the remainder;
* ``ratio: r``: the share r of ``mix.total`` (default: all usable records, or their tokens), counted in samples or
  in tokens (``mix.ratio_unit``; tokens are all tokens of a sample, prompt included);
* neither: every record once.

Selection depends only on the seed and the data. The per-source table (samples, tokens, supervised tokens,
truncated, dropped, skipped) is printed at start-up and written to the run directory with the content hash of the
final training set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import datasets
import numpy as np

from rtrain.config import DataConfig, MixConfig, RatioUnit, SourceConfig
from rtrain.data.records import DataError
from rtrain.data.tokenize import SourceStats


@dataclass
class SampleSet:
    """Samples addressed as (pool, row) into tokenized Arrow datasets, with their lengths and source names."""

    pools: list[datasets.Dataset]
    pool_idx: np.ndarray
    rows: np.ndarray
    source_idx: np.ndarray
    source_names: list[str]
    lengths: np.ndarray
    loss_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def sample(self, i: int) -> dict[str, Any]:
        """input_ids, labels and origin of sample i."""
        row = self.pools[int(self.pool_idx[i])][int(self.rows[i])]
        return {"input_ids": row["input_ids"], "labels": row["labels"], "origin": row["origin"],
                "source": self.source_names[int(self.source_idx[i])]}

    def content_hash(self) -> str:
        digests = [pool["digest"] for pool in self.pools]  # one column read per pool, not one row read per sample
        h = hashlib.sha256()
        for p, r in zip(self.pool_idx.tolist(), self.rows.tolist()):
            h.update(digests[p][r].encode())
        return h.hexdigest()


@dataclass
class DataBundle:
    train: SampleSet
    eval: SampleSet
    table: list[dict[str, Any]]  # one row per source, for the start-up report
    stats: dict[str, SourceStats]  # per source path
    content_hash: str

    def report_markdown(self) -> str:
        header = ["source", "samples", "unique", "tokens", "supervised", "truncated", "dropped", "skipped"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.table:
            lines.append("| " + " | ".join(str(row[h]) for h in header) + " |")
        lines.append(f"\ntrain samples: {len(self.train)}, eval samples: {len(self.eval)}, "
                     f"content hash: {self.content_hash[:16]}")
        for path, st in self.stats.items():
            if st.skipped or st.dropped:
                lines.append(f"{path}: {st.records} records, {st.usable} usable, dropped {st.dropped}, "
                             f"skipped {st.skipped}")
                lines.extend(f"  e.g. {ex}" for ex in st.skipped_examples[:3])
        return "\n".join(lines)

    def write(self, run_dir: Path) -> None:
        from dataclasses import asdict

        (run_dir / "data_stats.md").write_text(self.report_markdown() + "\n")
        (run_dir / "data_stats.json").write_text(json.dumps({
            "sources": self.table, "train_samples": len(self.train), "eval_samples": len(self.eval),
            "content_hash": self.content_hash, "paths": {p: asdict(s) for p, s in self.stats.items()},
        }, indent=2))


def _take(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` of the candidates: whole copies first, then a seeded draw without replacement."""
    copies, rest = divmod(count, len(candidates))
    return np.concatenate([np.tile(candidates, copies), rng.permutation(candidates)[:rest]])


def _take_tokens(candidates: np.ndarray, lengths: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Candidates in seeded order (reshuffled each pass) until their tokens reach the budget."""
    chosen: list[np.ndarray] = []
    total = 0
    while total < budget:
        order = rng.permutation(candidates)
        cum = np.cumsum(lengths[order])
        n = int(np.searchsorted(cum, budget - total, side="left")) + 1
        chosen.append(order[:n])
        total += int(cum[min(n, len(cum)) - 1])
    return np.concatenate(chosen) if chosen else candidates[:0]


def build_mix(
    cfg: DataConfig, mix: MixConfig, seed: int,
    tokenize: Callable[[str, str], tuple[datasets.Dataset, SourceStats]],
) -> DataBundle:
    """Tokenize each distinct source path (``tokenize(path, split)``), hold out eval records, and select the mix."""
    keys: list[tuple[str, str]] = []
    for s in mix.sources:
        key = (s.path or cfg.path or "", s.split)
        if key not in keys:
            keys.append(key)
    pools, stats = [], {}
    for path, split in keys:
        ds, st = tokenize(path, split)
        pools.append(ds)
        stats[f"{path}[{split}]"] = st
    lengths = [np.asarray(p["length"], dtype=np.int64) for p in pools]
    loss_tokens = [np.asarray(p["num_loss_tokens"], dtype=np.int64) for p in pools]
    domains = [np.asarray(p["domain"], dtype=object) for p in pools]

    # Eval hold-out over the union of usable records, independent of the mix.
    all_refs = np.array([(p, r) for p, ds in enumerate(pools) for r in range(len(ds))], dtype=np.int64)
    held = np.random.default_rng([seed, 0xE7A1]).permutation(len(all_refs))[: cfg.eval_samples]
    available = [np.ones(len(ds), dtype=bool) for ds in pools]
    for p, r in all_refs[held]:
        available[p][r] = False
    if cfg.eval_samples >= len(all_refs):
        raise DataError(f"data.eval_samples={cfg.eval_samples} leaves no training data ({len(all_refs)} usable "
                        "records). Fix: lower data.eval_samples")

    unit_tokens = mix.ratio_unit == RatioUnit.tokens
    if mix.total is not None:
        total = mix.total
    elif unit_tokens:
        total = int(sum(lengths[p][available[p]].sum() for p in range(len(pools))))
    else:
        total = int(sum(a.sum() for a in available))

    sel_pool, sel_rows, sel_source, table = [], [], [], []
    for si, s in enumerate(mix.sources):
        p = keys.index((s.path or cfg.path or "", s.split))
        mask = available[p].copy()
        for key, value in s.where.items():
            if key != "domain":
                raise DataError(f"mix source '{s.name}': where.{key} is not supported. Fix: filter on 'domain'")
            mask &= domains[p] == value
        candidates = np.flatnonzero(mask)
        if len(candidates) == 0:
            found = sorted(set(domains[p][available[p]].tolist()))
            raise DataError(f"mix source '{s.name}' ({keys[p][0]}, where {dict(s.where)}) matches no usable record; "
                            f"domains present: {found}. Fix: change the mix or the data")
        chosen = _select(s, candidates, lengths[p], total, unit_tokens, np.random.default_rng([seed, si, 0x5EED]))
        sel_pool.append(np.full(len(chosen), p))
        sel_rows.append(chosen)
        sel_source.append(np.full(len(chosen), si))
        truncated = np.asarray(pools[p].select(np.unique(chosen))["truncated"], dtype=bool)
        st = stats[f"{keys[p][0]}[{keys[p][1]}]"]
        table.append({
            "source": s.name, "samples": len(chosen), "unique": len(np.unique(chosen)),
            "tokens": int(lengths[p][chosen].sum()), "supervised": int(loss_tokens[p][chosen].sum()),
            "truncated": int(truncated.sum()), "dropped": sum(st.dropped.values()),
            "skipped": sum(st.skipped.values()),
        })

    names = [s.name for s in mix.sources]
    train = _sample_set(pools, np.concatenate(sel_pool), np.concatenate(sel_rows), np.concatenate(sel_source),
                        names, lengths, loss_tokens)
    if int(train.loss_tokens.sum()) == 0:
        raise DataError("the training set has zero supervised tokens. Fix: check data.train_on and the template")
    eval_refs = all_refs[np.sort(held)]
    evalset = _sample_set(pools, eval_refs[:, 0], eval_refs[:, 1], np.zeros(len(eval_refs), dtype=np.int64),
                          ["eval"], lengths, loss_tokens)
    h = hashlib.sha256((train.content_hash() + evalset.content_hash()).encode()).hexdigest()
    return DataBundle(train=train, eval=evalset, table=table, stats=stats, content_hash=h)


def _select(s: SourceConfig, candidates: np.ndarray, lengths: np.ndarray, total: int, unit_tokens: bool,
            rng: np.random.Generator) -> np.ndarray:
    if s.samples is not None:
        if s.samples <= 0:
            raise DataError(f"mix source '{s.name}': samples={s.samples} must be positive")
        return _take(candidates, s.samples, rng)
    if s.ratio is not None:
        if not 0 < s.ratio:
            raise DataError(f"mix source '{s.name}': ratio={s.ratio} must be positive")
        target = int(round(s.ratio * total))
        if unit_tokens:
            return _take_tokens(candidates, lengths, target, rng)
        return _take(candidates, max(1, target), rng)
    return candidates


def _sample_set(pools: list[datasets.Dataset], pool_idx: np.ndarray, rows: np.ndarray, source_idx: np.ndarray,
                names: list[str], lengths: list[np.ndarray], loss_tokens: list[np.ndarray]) -> SampleSet:
    pool_idx, rows = pool_idx.astype(np.int64), rows.astype(np.int64)
    return SampleSet(
        pools=pools, pool_idx=pool_idx, rows=rows, source_idx=source_idx.astype(np.int64), source_names=names,
        lengths=np.array([lengths[p][r] for p, r in zip(pool_idx, rows)], dtype=np.int64),
        loss_tokens=np.array([loss_tokens[p][r] for p, r in zip(pool_idx, rows)], dtype=np.int64),
    )
