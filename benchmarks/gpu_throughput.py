"""GPU throughput of one training micro-step: Sky-T1's baseline settings against rtrain's fast path (and TRL).

Shapes: random-weight Qwen2.5 0.5B, 1.5B, 7B, and a depth-truncated 32B (its first layers plus its full 152K
vocabulary head), built from the architecture numbers in conf/model (no download). Data: synthetic samples whose
lengths follow the Sky-T1 mix (lognormal around 3.9K tokens, capped at the row length), the same samples for every
setting. Settings, all with bf16 weights and gradients (as under ZeRO-3 bf16) and the optimizer step excluded
(ZeRO-3 offload runs it on the CPU once per 96 samples):

* ``baseline``: Sky-T1 as run: SDPA, one sample per micro-batch, no packing, no Liger, full activation checkpointing;
* ``fast``: flash-attention varlen (when installed), samples packed into rows of 8K/16K tokens, Liger kernels and
  fused loss (when installed), selective activation checkpointing (every 2nd layer, falling back to every layer on
  out-of-memory).

Reported per setting: real tokens/s on the GPU, MFU (rtrain/metrics.py FLOPs against the device's peak), peak memory.
``--trl`` adds an end-to-end comparison with TRL's SFTTrainer (Liger + padding-free) on the 1.5B shape, optimizer
included, same samples.

    python benchmarks/gpu_throughput.py                      # all shapes at 8K and 16K -> benchmarks/results/
    python benchmarks/gpu_throughput.py --trl                # + TRL comparison (pip install trl)
    python benchmarks/gpu_throughput.py --smoke              # seconds on CPU: the tiny model, to check the script
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtrain.config import ArchConfig, compose
from rtrain.data.batching import collate, pack_decreasing
from rtrain.metrics import ModelFlops

ROOT = Path(__file__).resolve().parent.parent
H100_PEAK_BF16 = 989e12
HAS_FLASH = importlib.util.find_spec("flash_attn") is not None
HAS_LIGER = importlib.util.find_spec("liger_kernel") is not None


def shapes(smoke: bool) -> dict[str, ArchConfig]:
    if smoke:
        return {"tiny": compose().model.arch}
    out = {name: compose([f"model=qwen2_5_{name}_instruct"]).model.arch for name in ("0_5b", "1_5b", "7b")}
    a32 = compose(["model=qwen2_5_32b_instruct"]).model.arch
    a32.num_layers = 4  # depth-truncated: per-layer cost and the full vocabulary head of the 32B
    out["32b_4layers"] = a32
    return out


def sample_lengths(row_tokens: int, num_tokens: int, seed: int = 0) -> list[int]:
    """Sky-T1-like lengths (lognormal, mean ~3.9K), capped at the row length, totalling about num_tokens."""
    rng = np.random.default_rng(seed)
    lengths: list[int] = []
    while sum(lengths) < num_tokens:
        n = int(rng.lognormal(mean=math.log(3000), sigma=0.75))
        lengths.append(int(min(max(n, 200), row_tokens)))
    return lengths


def build(arch: ArchConfig, attn: str, liger: bool, checkpoint_every: int, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, Qwen2Config

    from rtrain.model import CausalLMWithLoss, apply_liger

    config = Qwen2Config(vocab_size=arch.vocab_size, hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
                         num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads,
                         intermediate_size=arch.intermediate_size, tie_word_embeddings=arch.tie_word_embeddings,
                         max_position_embeddings=32768, use_cache=False)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=dtype).to(device)
    if liger:
        apply_liger(model)
    if checkpoint_every:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False},
                                              every_n_layers=checkpoint_every)
    return CausalLMWithLoss(model, liger=liger).train()


class Qwen2ModuleSnapshot:
    """Liger patches transformers' Qwen2 module process-wide; restore it so the next setting starts unpatched."""

    def __enter__(self) -> None:
        import transformers.models.qwen2.modeling_qwen2 as qwen2

        self.module, self.saved = qwen2, dict(vars(qwen2))

    def __exit__(self, *exc: object) -> None:
        for name, value in self.saved.items():
            setattr(self.module, name, value)


def measure(arch: ArchConfig, lengths: list[int], row_tokens: int, *, packing: bool, attn: str, liger: bool,
            checkpoint_every: int, device: str, dtype: torch.dtype, peak: float) -> dict[str, Any]:
    module = build(arch, attn, liger, checkpoint_every, device, dtype)
    rng = np.random.default_rng(1)
    samples = [{"input_ids": rng.integers(10, arch.vocab_size - 1, n).tolist(),
                "labels": rng.integers(10, arch.vocab_size - 1, n).tolist()} for n in lengths]
    if packing:
        groups = [[samples[i] for i in b] for b in pack_decreasing(lengths, row_tokens)]
    else:
        groups = [[s] for s in samples]
    batches = [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in collate(g, packing, 0).items()
                if k in ("input_ids", "position_ids", "targets", "cu_seqlens", "max_seqlen")} for g in groups]

    def run(batch: dict[str, Any]) -> None:
        module(**batch).backward()

    run(batches[0])  # warm-up: kernels, allocator
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(lengths)
    flops = ModelFlops.from_arch(arch).train_flops(lengths)
    result = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
              "mfu": flops / seconds / peak, "micro_batches": len(batches),
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}
    return result  # the model and batches go with this frame; the caller empties the CUDA cache


def settings(smoke: bool) -> dict[str, dict[str, Any]]:
    fast_attn = "flash_attention_2" if HAS_FLASH and not smoke else "sdpa"
    return {
        "baseline": {"packing": False, "attn": "sdpa", "liger": False, "checkpoint_every": 1},
        "fast": {"packing": True, "attn": fast_attn, "liger": HAS_LIGER and not smoke, "checkpoint_every": 2},
    }


def run_trl(row_tokens: int, steps: int) -> dict[str, Any]:
    """rtrain's trainer and TRL's SFTTrainer, end to end (optimizer included), 1.5B shape, same samples."""
    if importlib.util.find_spec("trl") is None:
        raise SystemExit("--trl needs TRL: pip install trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Qwen2Config
    from trl import SFTConfig, SFTTrainer

    arch = compose(["model=qwen2_5_1_5b_instruct"]).model.arch
    lengths = sample_lengths(row_tokens, row_tokens * steps * 4, seed=2)
    rng = np.random.default_rng(3)
    rows = [{"input_ids": rng.integers(10, arch.vocab_size - 1, n).tolist()} for n in lengths]
    config = Qwen2Config(vocab_size=arch.vocab_size, hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
                         num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads,
                         intermediate_size=arch.intermediate_size, tie_word_embeddings=True, use_cache=False)
    results: dict[str, Any] = {}

    torch.cuda.reset_peak_memory_stats()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="flash_attention_2" if HAS_FLASH else "sdpa",
                                             dtype=torch.float32).cuda()
    args = SFTConfig(output_dir="/tmp/trl_bench", per_device_train_batch_size=1, max_length=row_tokens, packing=True,
                     padding_free=True, use_liger_kernel=HAS_LIGER, bf16=True, max_steps=steps, learning_rate=1e-5,
                     report_to=[], save_strategy="no", logging_steps=10**6, gradient_checkpointing=True,
                     include_num_input_tokens_seen=True, dataset_num_proc=1)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = trainer.state.num_input_tokens_seen
    results["trl"] = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                      "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}
    del trainer, model
    torch.cuda.empty_cache()

    torch.cuda.reset_peak_memory_stats()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="flash_attention_2" if HAS_FLASH else "sdpa",
                                             dtype=torch.float32).cuda()
    from rtrain.model import CausalLMWithLoss, apply_liger

    if HAS_LIGER:
        apply_liger(model)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    module = CausalLMWithLoss(model, liger=HAS_LIGER).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    bins = pack_decreasing(lengths, row_tokens)
    samples = [{"input_ids": r["input_ids"], "labels": r["input_ids"]} for r in rows]
    start, tokens = time.perf_counter(), 0
    for b in bins[:steps]:
        batch = {k: (v.cuda() if isinstance(v, torch.Tensor) else v)
                 for k, v in collate([samples[i] for i in b], True, 0).items()
                 if k in ("input_ids", "position_ids", "targets", "cu_seqlens", "max_seqlen")}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = module(**batch)
        (loss / max(1, int((batch["targets"] != -100).sum()))).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(batch["input_ids"].numel())
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    results["rtrain"] = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                         "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}
    results["ratio_tokens_per_s"] = results["rtrain"]["tokens_per_s"] / results["trl"]["tokens_per_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="8192,16384")
    parser.add_argument("--tokens-per-setting", type=int, default=200_000)
    parser.add_argument("--trl", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, to check the script itself")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/gpu_throughput_<device>.json")
    args = parser.parse_args()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no CUDA device: run on a GPU, or pass --smoke to check the script on CPU")
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    peak = 2.0e11 if device == "cpu" else H100_PEAK_BF16
    lengths_cfg = [512, 1024] if args.smoke else [int(x) for x in args.lengths.split(",")]
    budget = 4096 if args.smoke else args.tokens_per_setting
    rows = []
    for shape, arch in shapes(args.smoke).items():
        for row_tokens in lengths_cfg:
            lengths = sample_lengths(row_tokens, budget) if not args.smoke else [row_tokens // 4, row_tokens // 2,
                                                                                 row_tokens, row_tokens // 3] * 2
            for name, s in settings(args.smoke).items():
                attempt = dict(s)
                while True:
                    try:
                        with Qwen2ModuleSnapshot():
                            r = measure(arch, lengths, row_tokens, device=device, dtype=dtype, peak=peak, **attempt)
                        break
                    except torch.OutOfMemoryError:
                        torch.cuda.empty_cache()
                        if attempt["checkpoint_every"] == 1:
                            r = {"error": "out of memory"}
                            break
                        attempt["checkpoint_every"] = 1
                if device == "cuda":
                    torch.cuda.empty_cache()
                row = {"shape": shape, "row_tokens": row_tokens, "setting": name, **attempt, **r}
                rows.append(row)
                print(json.dumps(row), flush=True)
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)",
                              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "flash_attn": HAS_FLASH,
                              "liger": HAS_LIGER, "peak_flops": peak, "rows": rows}
    if args.trl:
        report["trl_comparison"] = run_trl(8192, steps=30)
    name = "smoke_cpu" if args.smoke else report["device"].replace(" ", "_")
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu_throughput_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
