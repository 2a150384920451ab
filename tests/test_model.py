"""The loss head, packed-sequence isolation, loading errors, and the Liger patch (applied on CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rtrain.config import AttnImpl, ModelConfig, ModelInit, asset_path
from rtrain.data.batching import collate
from rtrain.model import CausalLMWithLoss, ModelError, check_attention, load_model, load_tokenizer


@pytest.fixture(scope="module")
def model():
    m = load_model(ModelConfig(path=asset_path("tiny_qwen2"), init=ModelInit.random), seed=0)
    return m.eval()


def _logits(model, batch):
    out = model.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    return model.lm_head(out.last_hidden_state)


def test_packed_sample_does_not_see_its_neighbour(model) -> None:
    torch.manual_seed(0)
    a = {"input_ids": torch.randint(10, 3000, (40,)).tolist(), "labels": [-100] * 40}
    b1 = {"input_ids": torch.randint(10, 3000, (25,)).tolist(), "labels": [-100] * 25}
    b2 = {"input_ids": torch.randint(10, 3000, (33,)).tolist(), "labels": [-100] * 33}
    with torch.no_grad():
        alone = _logits(model, collate([a], packing=True, pad_id=0))[0]
        after1 = _logits(model, collate([b1, a], packing=True, pad_id=0))[0, 25:]
        after2 = _logits(model, collate([b2, a], packing=True, pad_id=0))[0, 33:]
    torch.testing.assert_close(after1, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after2, alone, rtol=1e-5, atol=1e-5)


def test_loss_head_sum_matches_cross_entropy_and_chunks(model) -> None:
    torch.manual_seed(1)
    ids = torch.randint(10, 3000, (1, 50))
    targets = torch.randint(10, 3000, (1, 50))
    targets[0, :7] = -100
    wrapped = CausalLMWithLoss(model, loss_chunk_tokens=16)
    loss = wrapped(input_ids=ids, position_ids=torch.arange(50)[None], targets=targets)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    expected = F.cross_entropy(logits[0].float(), targets[0], ignore_index=-100, reduction="sum")
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-4)
    # The lm_head still works as a plain head (generation, export).
    assert model.lm_head(torch.zeros(1, 2, model.config.hidden_size)).shape[-1] == model.config.vocab_size


def test_empty_microbatch_gives_zero_loss_not_nan(model) -> None:
    wrapped = CausalLMWithLoss(model)
    batch = collate([], packing=True, pad_id=0)
    loss = wrapped(input_ids=batch["input_ids"], position_ids=batch["position_ids"], targets=batch["targets"])
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_missing_model_directory_and_flash_attention_errors(tmp_path) -> None:
    with pytest.raises(ModelError, match="Fix: check that .* holds the model files"):
        load_tokenizer(ModelConfig(path=str(tmp_path)))
    with pytest.raises(ModelError, match="hf download Org/none"):
        load_tokenizer(ModelConfig(path="Org/none"))
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ModelError, match="pip install flash-attn --no-build-isolation"):
            check_attention(ModelConfig(attn_implementation=AttnImpl.flash_attention_2))


def test_liger_patch_applies_on_cpu(restore_transformers_qwen2: None) -> None:
    pytest.importorskip("liger_kernel")
    import transformers.models.qwen2.modeling_qwen2 as qwen2

    from rtrain.model import apply_liger

    m = load_model(ModelConfig(path=asset_path("tiny_qwen2"), init=ModelInit.random), seed=0)
    apply_liger(m)
    # Liger swaps the forwards of the existing modules (weights stay) and the RoPE function of the module.
    assert m.model.norm.forward.__qualname__ == "LigerRMSNorm.forward"
    assert m.model.layers[0].input_layernorm.forward.__qualname__ == "LigerRMSNorm.forward"
    assert m.model.layers[0].mlp.forward.__qualname__ == "LigerSwiGLUMLP.forward"
    assert qwen2.apply_rotary_pos_emb.__name__ == "liger_rotary_pos_emb"
    wrapped = CausalLMWithLoss(m, liger=True)
    assert wrapped.model.lm_head.use_liger and "liger" not in str(list(wrapped.state_dict()))
