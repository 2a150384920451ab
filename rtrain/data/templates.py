"""Chat templates and assistant-only loss masks.

A conversation is rendered with a Jinja chat template (the tokenizer's own by default, or a named template such
as ``qwen25``), then cut into segments: the text the model is trained to produce (each trained assistant turn's
content plus its end token) and everything else. The cut points come from rendering prefixes of the
conversation and checking that each is a prefix of the full text, so they work for any template, including ones
without ``{% generation %}`` markers (such as the real Qwen2.5 tokenizer's). Segments are tokenized one by one,
so a supervised span never shares a token with its surroundings and decoding the supervised tokens gives back
exactly the assistant contents and their end tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from rtrain.errors import RTrainError

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Both templates open with the record's system prompt, or Qwen's default one.
_SYSTEM_BLOCK = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>system\\n" + QWEN_DEFAULT_SYSTEM + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
)

# The Qwen2.5 ChatML layout: assistant turns end with <|im_end|> (the tokenizer's eos), then a newline.
# `{% generation %}` markers let transformers' return_assistant_tokens_mask work too.
QWEN2_5_CHATML = (
    _SYSTEM_BLOCK
    + "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|im_start|>user\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}"
    "{{- '\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# The Sky-T1 run's LLaMA-Factory `qwen25` template, byte-identical:
#   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
#   <|im_start|>assistant\n{assistant}<|endoftext|>
# Each assistant turn ends with <|endoftext|> (the template's eos replaces <|im_end|>); a later user turn is
# preceded by the separator "\n".
QWEN25_SKY_T1 = (
    _SYSTEM_BLOCK
    + "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- if not loop.first and loop.previtem['role'] == 'assistant' -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<|im_start|>user\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{% generation %}{{- message['content'] + '<|endoftext|>' -}}{% endgeneration %}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# name -> (jinja template, end token of an assistant turn)
NAMED_TEMPLATES: dict[str, tuple[str, str]] = {
    "qwen25": (QWEN25_SKY_T1, "<|endoftext|>"),
    "chatml": (QWEN2_5_CHATML, "<|im_end|>"),
}


class TemplateError(RTrainError, ValueError):
    pass


@dataclass(frozen=True)
class ChatFormat:
    """The template used for training (and exported with the model) and the token that ends an assistant turn."""

    template: str
    end_token: str

    @classmethod
    def resolve(cls, tokenizer: PreTrainedTokenizerBase, name: str | None) -> ChatFormat:
        if name is not None:
            if name not in NAMED_TEMPLATES:
                raise TemplateError(f"data.template='{name}' is unknown. Fix: use one of {sorted(NAMED_TEMPLATES)} "
                                    "or null for the tokenizer's own template")
            template, end = NAMED_TEMPLATES[name]
        else:
            template = tokenizer.chat_template
            if not isinstance(template, str) or not template:
                raise TemplateError(
                    f"the tokenizer at '{tokenizer.name_or_path}' has no chat template. Fix: set data.template to "
                    f"one of {sorted(NAMED_TEMPLATES)}"
                )
            end = tokenizer.eos_token
        if end is None or tokenizer.convert_tokens_to_ids(end) in (None, tokenizer.unk_token_id):
            raise TemplateError(f"the end token {end!r} of the chat template is not a token of the tokenizer")
        return cls(template=template, end_token=end)

    def end_token_id(self, tokenizer: PreTrainedTokenizerBase) -> int:
        return int(tokenizer.convert_tokens_to_ids(self.end_token))


def render(tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat, messages: list[dict[str, str]],
           add_generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, chat_template=fmt.template, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    assert isinstance(text, str)
    return text


def segments(tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat, messages: list[dict[str, str]],
             last_turn_only: bool = False) -> list[tuple[str, bool]]:
    """Cut the rendered conversation into (text, supervised) segments whose concatenation is the full text.

    ``messages`` may start with a system message. The supervised segments are the trained assistant turns'
    contents followed by the end token.
    """
    full = render(tokenizer, fmt, messages, add_generation_prompt=False)
    assistant_idx = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    trained = assistant_idx[-1:] if last_turn_only else assistant_idx
    out: list[tuple[str, bool]] = []
    cursor = 0
    for i in trained:
        prefix = render(tokenizer, fmt, messages[:i], add_generation_prompt=True)
        content = messages[i]["content"]
        start = len(prefix)
        if not full.startswith(prefix) or start < cursor:
            raise TemplateError("the chat template does not render conversations prefix-consistently "
                                f"(turn {i}); the loss mask cannot be derived. Fix: set data.template")
        if not full.startswith(content, start):
            raise TemplateError(f"the chat template changes assistant turn {i}'s content when rendering it; "
                                "the loss mask cannot be derived. Fix: set data.template")
        end = full.find(fmt.end_token, start + len(content))
        if end < 0:
            raise TemplateError(f"assistant turn {i} is not followed by the end token {fmt.end_token!r}")
        end += len(fmt.end_token)
        out.append((full[cursor:start], False))
        out.append((full[start:end], True))
        cursor = end
    out.append((full[cursor:], False))
    return [(text, sup) for text, sup in out if text]


def tokenize_segments(tokenizer: PreTrainedTokenizerBase, parts: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 outside supervised segments) for the segments, tokenized one by one."""
    input_ids: list[int] = []
    labels: list[int] = []
    encoded = tokenizer([text for text, _ in parts], add_special_tokens=False)["input_ids"]
    for (_, supervised), ids in zip(parts, encoded):
        input_ids.extend(ids)
        labels.extend(ids if supervised else [-100] * len(ids))
    return input_ids, labels
