"""Reading chat records from local files or the Hugging Face Hub, and validating them into conversations.

Sources: local ``.jsonl``, ``.json`` (an array of records) and ``.parquet`` files, a directory of such files (a
local copy of a Hub dataset), or a Hub id loaded with ``datasets.load_dataset``. Schemas: ShareGPT
(``system`` + ``conversations[{from, value}]``, roles user/assistant or human/gpt) and OpenAI
(``messages[{role, content}]``); field and role names are remapped through ``data.fields`` / ``data.roles``.

Every problem with a record raises :class:`BadRecordError` naming the file, the row (line number for JSONL) and
the fix; with ``data.on_bad_record=skip`` the caller counts and reports it instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtrain.config import DataConfig, Schema
from rtrain.errors import RTrainError

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
ROLES = ("system", "user", "assistant")
MULTIPLE_CHOICE = re.compile(r"(?m)^\s*\(?[A-D][.)]\s")


class DataError(RTrainError, ValueError):
    """A data problem that stops the run (missing file, unreachable Hub, no usable samples)."""


class BadRecordError(DataError):
    """One record is unusable. ``origin`` is ``file:line`` (or ``file row N``); ``reason`` is a short category."""

    def __init__(self, origin: str, reason: str, detail: str, fix: str) -> None:
        self.origin, self.reason = origin, reason
        super().__init__(f"{origin}: {detail}. Fix: {fix}")


@dataclass(frozen=True)
class Conversation:
    """A validated record: an optional system prompt and alternating user/assistant turns."""

    system: str | None
    messages: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": str}, ...]
    domain: str
    origin: str


def is_local(path: str) -> bool:
    """A path is local if it exists, or looks like one (absolute, relative, or with a data-file suffix)."""
    return (
        os.path.exists(path)
        or path.startswith(("/", "./", "../", "~"))
        or path.endswith(DATA_SUFFIXES)
        or path.count("/") != 1
    )


def local_files(path: str, split: str) -> list[Path]:
    """The data files behind a local path; a directory yields its data files (those naming the split, if any)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data file not found: {p}. Fix: check data.path (or the mix source's path)")
    if p.is_file():
        if p.suffix not in DATA_SUFFIXES:
            raise DataError(f"{p}: unsupported file type '{p.suffix}'. Fix: use one of {', '.join(DATA_SUFFIXES)}")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in DATA_SUFFIXES and ".cache" not in f.parts)
    for_split = [f for f in files if split in f.name]
    files = for_split or files
    if not files:
        raise DataError(f"{p}: directory holds no {'/'.join(DATA_SUFFIXES)} files. Fix: point data.path at the data")
    return files


def read_local(path: Path) -> Iterator[tuple[str, dict[str, Any] | BadRecordError]]:
    """Yield (origin, record) per row; a row that cannot be parsed yields a BadRecordError instead."""
    if path.suffix == ".jsonl":
        with path.open("rb") as f:
            for line_no, raw in enumerate(f, start=1):
                origin = f"{path}:{line_no}"
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield origin, BadRecordError(
                        origin, "invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line",
                        "re-encode the file as UTF-8 or remove the line",
                    )
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as e:
                    yield origin, BadRecordError(
                        origin, "malformed_json", f"malformed JSON ({e.msg} at column {e.colno})",
                        "fix or remove the line (each line must be one JSON object)",
                    )
                    continue
                if not isinstance(record, dict):
                    yield origin, BadRecordError(
                        origin, "not_an_object", f"expected a JSON object, got {type(record).__name__}",
                        "each line must be one JSON object",
                    )
                    continue
                yield origin, record
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: invalid UTF-8 at byte {e.start}. Fix: re-encode the file as UTF-8") from e
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg}). Fix: repair the file, or use JSONL") from e
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of records. Fix: write [ {{...}}, ... ] or use JSONL")
        for row, record in enumerate(data):
            origin = f"{path} row {row}"
            if isinstance(record, dict):
                yield origin, record
            else:
                yield origin, BadRecordError(
                    origin, "not_an_object", f"expected a JSON object, got {type(record).__name__}",
                    "each array element must be one JSON object",
                )
    else:
        import pyarrow.parquet as pq

        for row, record in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path} row {row}", record


def read_hub(repo_id: str, split: str) -> Iterator[tuple[str, dict[str, Any] | BadRecordError]]:
    """Rows of a Hub dataset; offline or unknown ids fail fast with how to use a local copy instead."""
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, split=split)
    except Exception as e:  # the Hub client raises many types (ConnectionError, OfflineModeIsEnabled, ...)
        raise DataError(
            f"could not load Hub dataset '{repo_id}' (split '{split}'): {type(e).__name__}: {str(e)[:200]}. "
            f"Fix: on a machine with network run `hf download --repo-type dataset {repo_id} --local-dir DIR`, "
            f"copy DIR here and set data.path=DIR (or a .json/.jsonl/.parquet file)"
        ) from e
    for row, record in enumerate(ds):
        yield f"{repo_id}[{split}] row {row}", record


def read_records(path: str, split: str) -> Iterator[tuple[str, dict[str, Any] | BadRecordError]]:
    if is_local(path):
        for file in local_files(path, split):
            yield from read_local(file)
    else:
        yield from read_hub(path, split)


def derive_domain(messages: list[dict[str, str]]) -> str:
    """Domain of a record without a domain field, from the conventions of the Sky-T1 prompts.

    Code prompts (TACO/APPS) ask for an executable Python function or read stdin; multiple-choice questions
    (options A-D on their own lines, as in GPQA-style science) are science; other prompts asking for a \\boxed{}
    answer are math; the rest (STILL-2 science and puzzles) is science.
    """
    user = " ".join(m["content"] for m in messages if m["role"] == "user")
    lower = user.lower()
    if "executable python" in lower or "stdin" in lower or "```python" in lower or "python function" in lower:
        return "code"
    if len(MULTIPLE_CHOICE.findall(user)) >= 3:
        return "science"
    if "\\boxed" in user:
        return "math"
    return "science"


def to_conversation(record: dict[str, Any], origin: str, cfg: DataConfig) -> Conversation:
    """Validate one record against the configured schema; raises BadRecordError with the fix."""
    f = cfg.fields
    schema = cfg.schema
    if schema == Schema.auto:
        if f.conversations in record:
            schema = Schema.sharegpt
        elif f.messages in record:
            schema = Schema.openai
        else:
            raise BadRecordError(
                origin, "missing_field",
                f"record has neither '{f.conversations}' nor '{f.messages}' (keys: {sorted(record)[:8]})",
                "remap the field names with data.fields.conversations / data.fields.messages",
            )
    if schema == Schema.sharegpt:
        turns_key, role_key, content_key = f.conversations, f.role, f.content
    else:
        turns_key, role_key, content_key = f.messages, f.openai_role, f.openai_content
    if turns_key not in record:
        raise BadRecordError(
            origin, "missing_field", f"missing field '{turns_key}' (keys: {sorted(record)[:8]})",
            f"remap it with data.fields (schema {schema.value}) or fix the record",
        )
    turns = record[turns_key]
    if not isinstance(turns, list) or not turns:
        raise BadRecordError(origin, "empty_conversation", f"'{turns_key}' is empty or not a list",
                             "remove the record or give it user and assistant turns")

    system = record.get(f.system)
    if system is not None and not isinstance(system, str):
        raise BadRecordError(origin, "bad_content", f"'{f.system}' is {type(system).__name__}, not a string",
                             "make the system prompt a string or remove it")
    messages: list[dict[str, str]] = []
    for i, turn in enumerate(turns):
        where = f"{turns_key}[{i}]"
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            keys = sorted(turn) if isinstance(turn, dict) else type(turn).__name__
            raise BadRecordError(origin, "missing_field",
                                 f"{where} needs '{role_key}' and '{content_key}' (has {keys})",
                                 f"remap with data.fields.role/content (schema {schema.value}) or fix the record")
        raw_role, content = turn[role_key], turn[content_key]
        role = cfg.roles.get(str(raw_role))
        if role not in ROLES:
            raise BadRecordError(origin, "unknown_role", f"unknown role '{raw_role}' in {where}",
                                 f"map it with data.roles.{raw_role}=user|assistant|system")
        if not isinstance(content, str):
            raise BadRecordError(origin, "bad_content", f"{where} content is {type(content).__name__}, not a string",
                                 "make every turn's content a string")
        if not content.strip():
            raise BadRecordError(origin, "empty_content", f"{where} ({role}) has empty content",
                                 "remove the turn or the record")
        if role == "system":
            if i != 0:
                raise BadRecordError(origin, "turn_order", f"system turn at {where}, not first",
                                     "put the system prompt first")
            system = content if system is None else system
            continue
        expected = "user" if len(messages) % 2 == 0 else "assistant"
        if role != expected:
            raise BadRecordError(origin, "turn_order", f"{where} is '{role}' where '{expected}' was expected",
                                 "turns must alternate user/assistant, starting with user")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecordError(origin, "no_assistant", "no assistant turn, nothing to train on",
                             "remove the record or add the assistant's answer")
    if system is not None and not system.strip():
        system = None
    domain = record.get(cfg.domain_field)
    if not isinstance(domain, str) or not domain:
        domain = derive_domain(messages)
    return Conversation(system=system, messages=messages, domain=domain, origin=origin)
