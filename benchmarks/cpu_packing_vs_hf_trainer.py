"""CPU throughput: rtrain (padding-free packing) against the transformers Trainer (padding to the longest).

Both train the same tiny Qwen2 (random init, fp32) on the same tokenized samples of the bundled data, with the
same global batch (4 samples per step), in one process, one after the other. Reported: real (non-pad) training
tokens per second of the training loop (data loading included, model build and tokenization excluded), and the
ratio. rtrain is also run padded, to separate what packing buys from what the loop itself costs.

    python benchmarks/cpu_packing_vs_hf_trainer.py --steps 60
    # writes benchmarks/results/cpu_packing_vs_hf_trainer.json

A benchmark, not a test: numbers depend on the machine, which is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent


def run_rtrain(steps: int, packing: bool) -> dict[str, Any]:
    from rtrain.config import compose
    from rtrain.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose([f"trainer.max_steps={steps}", f"data.packing={str(packing).lower()}", "trainer.eval_every=0",
                       "trainer.export_final=false", "logger.progress_bar=false", "trainer.global_batch_size=4",
                       "trainer.micro_batch_size=4"], run_dir=tmp)
        summary = train(cfg)
    return {"tokens": summary["input_tokens"], "seconds": summary["train_time_s"],
            "tokens_per_s": summary["tokens_per_s"]}


def run_hf_trainer(steps: int) -> dict[str, Any]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from rtrain.config import compose
    from rtrain.data import ChatFormat, build_data
    from rtrain.model import load_model, load_tokenizer

    cfg = compose()
    tokenizer = load_tokenizer(cfg.model)
    bundle = build_data(cfg, tokenizer, ChatFormat.resolve(tokenizer, cfg.data.template))
    samples = [bundle.train.sample(i) for i in range(len(bundle.train))]
    model = load_model(cfg.model, seed=cfg.trainer.seed)
    pad = tokenizer.pad_token_id
    counted = {"real_tokens": 0}

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        # What DataCollatorForSeq2Seq(padding="longest") does, plus a count of the real tokens.
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), longest), pad)
        labels = torch.full((len(rows), longest), -100)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[b, :n], labels[b, :n], mask[b, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
            counted["real_tokens"] += n
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            clock["start"] = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            clock["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=4, max_steps=steps, learning_rate=cfg.optimizer.lr,
            lr_scheduler_type="cosine", warmup_steps=max(1, steps // 10), logging_steps=10**6, save_strategy="no",
            report_to=[], use_cpu=True, dataloader_num_workers=0, seed=cfg.trainer.seed, max_grad_norm=1.0,
            remove_unused_columns=False, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=samples, data_collator=collate, callbacks=[Clock()])
        trainer.train()
    seconds = clock["end"] - clock["start"]
    return {"tokens": counted["real_tokens"], "seconds": seconds, "tokens_per_s": counted["real_tokens"] / seconds}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cpu_packing_vs_hf_trainer.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import transformers

    results = {
        "rtrain_packed": run_rtrain(args.steps, packing=True),
        "hf_trainer_padded": run_hf_trainer(args.steps),
        "rtrain_padded": run_rtrain(args.steps, packing=False),
    }
    ratio = results["rtrain_packed"]["tokens_per_s"] / results["hf_trainer_padded"]["tokens_per_s"]
    report = {
        "benchmark": "cpu_packing_vs_hf_trainer", "steps": args.steps, "global_batch_size": 4,
        "results": results, "ratio_rtrain_packed_over_hf_trainer": ratio, "target_ratio": 1.3,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for name, r in results.items():
        print(f"{name:>18}: {r['tokens_per_s']:8.0f} real tokens/s ({r['tokens']} tokens in {r['seconds']:.1f}s)")
    print(f"rtrain packed / HF Trainer padded: {ratio:.2f}x (target >= 1.3x) -> {args.out}")


if __name__ == "__main__":
    main()
