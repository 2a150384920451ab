"""Export the trained model in Hugging Face format to ``<run dir>/final/``.

Writes ``config.json``, ``model.safetensors`` (sharded for large models), the tokenizer with the chat template
the model was trained with, and a ``generation_config.json`` whose ``eos_token_id`` is that template's end
token, so generation stops where training taught it to. The directory loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` and serves with vLLM.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from rtrain.data.templates import ChatFormat


def export_hf(model: PreTrainedModel, state_dict: dict[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase,
              fmt: ChatFormat, out_dir: Path, dtype: torch.dtype) -> Path:
    """Write the export atomically (temporary directory, then rename); call on rank 0 only."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    end_id = fmt.end_token_id(tokenizer)
    model.config.eos_token_id = end_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = True
    model.config.dtype = dtype
    state_dict = {k: v.to(dtype) for k, v in state_dict.items()}
    model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True, max_shard_size="5GB")
    tokenizer.chat_template = fmt.template
    tokenizer.save_pretrained(tmp)
    GenerationConfig(
        eos_token_id=end_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=model.config.bos_token_id, do_sample=True, temperature=0.6, top_p=0.95,
    ).save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
