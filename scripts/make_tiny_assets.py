"""Build the embedded tiny model assets: a byte-level BPE tokenizer and a Qwen2 config.

The tokenizer is trained on the bundled sample data (rtrain/assets/data/sky_t1_sample.jsonl) with Qwen2's
pre-tokenizer split, ChatML special tokens (<|endoftext|>, <|im_start|>, <|im_end|>) and the Qwen2.5-style chat
template of :mod:`rtrain.data.templates`. The model config is a 4-layer, 256-wide Qwen2 (about 4M parameters)
whose weights are initialised at random by ``model.init=random``; no weights are shipped.

Regenerate (after scripts/make_sample_data.py):

    python scripts/make_tiny_assets.py
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config

from rtrain.data.templates import QWEN2_5_CHATML

ROOT = Path(__file__).resolve().parent.parent
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer: single digits, letter runs, punctuation runs, newlines and spaces kept apart.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def texts(data: Path) -> Iterator[str]:
    for line in data.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        yield record["system"]
        for turn in record["conversations"]:
            yield turn["value"]


def build_tokenizer(data: Path, vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts(data), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        additional_special_tokens=SPECIALS, chat_template=QWEN2_5_CHATML, model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "rtrain/assets/data/sky_t1_sample.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "rtrain/assets/tiny_qwen2")
    parser.add_argument("--vocab-size", type=int, default=4096)
    args = parser.parse_args()

    tokenizer = build_tokenizer(args.data, args.vocab_size)
    # Like Qwen (151,665 tokens, 151,936 embedding rows), the embedding may have more rows than the vocabulary.
    assert len(tokenizer) <= args.vocab_size, len(tokenizer)
    config = Qwen2Config(
        vocab_size=args.vocab_size, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1_000_000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, use_cache=False, initializer_range=0.02,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    config.save_pretrained(args.out)
    print(f"wrote {args.out}: vocab {len(tokenizer)}, specials {SPECIALS}")


if __name__ == "__main__":
    main()
