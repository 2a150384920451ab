"""Check the pre-flight memory estimator (rtrain/plan.py) against what a real training step uses.

CPU (tiny model, fp32): the bytes autograd saves during the forward (activations and the loss's log-probabilities),
counted with saved-tensor hooks, against ``activation_bytes`` + ``loss_bytes``.
GPU (when CUDA is available; Qwen2.5 shapes with random weights, bf16 autocast, plain single-GPU path):
``torch.cuda.max_memory_allocated`` over one training step against the plan's device total.

    python benchmarks/plan_memory_validation.py            # writes benchmarks/results/plan_memory_<device>.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent


def saved_bytes(wrapped: torch.nn.Module, tokens: int, vocab: int) -> int:
    """Bytes of the tensors autograd saves for backward (parameters excluded), for one packed row."""
    params = {p.data_ptr() for p in wrapped.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            seen[t.data_ptr()] = max(seen.get(t.data_ptr(), 0), t.numel() * t.element_size())
        return t

    ids = torch.randint(10, vocab - 1, (1, tokens))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = wrapped(input_ids=ids, position_ids=torch.arange(tokens)[None], targets=ids)
    loss.backward()
    return sum(seen.values())


def cpu_rows() -> list[dict[str, Any]]:
    from rtrain.config import ArchConfig, ModelConfig, ModelInit, asset_path
    from rtrain.model import CausalLMWithLoss, load_model
    from rtrain.plan import activation_bytes, loss_bytes

    arch = ArchConfig()  # the tiny model's numbers (conf/model/tiny.yaml)
    rows = []
    for tokens in (256, 1024, 2048):
        for checkpointing in (False, True):
            model = load_model(ModelConfig(path=asset_path("tiny_qwen2"), init=ModelInit.random), seed=0)
            if checkpointing:
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            model.train()
            wrapped = CausalLMWithLoss(model, loss_chunk_tokens=1 << 30)
            measured = saved_bytes(wrapped, tokens, arch.vocab_size)
            layers = activation_bytes(arch, tokens, checkpointing, liger=False, bytes_per_element=4)
            if checkpointing:  # the recomputed layer lives only during backward, not among the forward's saves
                layers -= activation_bytes(arch, tokens, False, False, 4) // arch.num_layers
            # fp32 on CPU: the log-probabilities (4 bytes per vocabulary entry) are what the loss saves.
            loss = loss_bytes(arch, tokens, liger=False, chunk_tokens=1 << 30) * 4 // 10
            estimate = layers + loss
            rows.append({"device": "cpu", "tokens": tokens, "checkpointing": checkpointing, "measured_bytes": measured,
                         "estimated_bytes": estimate, "error": estimate / measured - 1})
    return rows


def gpu_rows() -> list[dict[str, Any]]:
    from transformers import AutoModelForCausalLM, Qwen2Config

    from rtrain.config import compose
    from rtrain.model import CausalLMWithLoss
    from rtrain.plan import memory_plan

    rows = []
    for model_name, tokens in (("qwen2_5_0_5b_instruct", 8192), ("qwen2_5_1_5b_instruct", 8192)):
        for checkpointing in (False, True):
            cfg = compose([f"model={model_name}", "hardware=gpu1", "trainer.precision=bf16",
                                  f"trainer.activation_checkpointing={str(checkpointing).lower()}"])
            a = cfg.model.arch
            config = Qwen2Config(vocab_size=a.vocab_size, hidden_size=a.hidden_size, num_hidden_layers=a.num_layers,
                                 num_attention_heads=a.num_heads, num_key_value_heads=a.num_kv_heads,
                                 intermediate_size=a.intermediate_size, tie_word_embeddings=a.tie_word_embeddings)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32).cuda()
            if checkpointing:
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            wrapped = CausalLMWithLoss(model)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
            ids = torch.randint(10, a.vocab_size - 1, (1, tokens), device="cuda")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = wrapped(input_ids=ids, position_ids=torch.arange(tokens, device="cuda")[None], targets=ids)
            loss.backward()
            opt.step()
            measured = torch.cuda.max_memory_allocated()
            plan = memory_plan(cfg, tokens, world_size=1)
            estimate = (plan.device_total_gib - plan.overhead_gib) * 1024**3
            rows.append({"device": torch.cuda.get_device_name(), "model": model_name, "tokens": tokens,
                         "checkpointing": checkpointing, "measured_bytes": measured, "estimated_bytes": estimate,
                         "error": estimate / measured - 1})
            del model, wrapped, opt, loss
    return rows


def main() -> None:
    rows = cpu_rows()
    device = "cpu"
    if torch.cuda.is_available():
        rows += gpu_rows()
        device = torch.cuda.get_device_name().replace(" ", "_")
    out = ROOT / "benchmarks" / "results" / f"plan_memory_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2))
    for r in rows:
        print(f"{r['device']:>12} {r.get('model', 'tiny'):>22} {r['tokens']:6d} tokens, AC {r['checkpointing']!s:5}: "
              f"measured {r['measured_bytes'] / 2**20:9.1f} MiB, estimated {r['estimated_bytes'] / 2**20:9.1f} MiB "
              f"({r['error']:+.0%})")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
