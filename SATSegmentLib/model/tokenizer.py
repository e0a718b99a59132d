"""SAT's text tokenisation (SAT_REFERENCE.md §2.2): `[CLS]=105 + WordPieces + [SEP]=106`, padded with 0.

SAT wraps prompts in the BERT tokens that sit inside the MPNet vocabulary, not MPNet's own `<s>`/`</s>`,
and masks `ids > 0`. The MPNet tokenizer files ship with the package (`mpnet_tokenizer/`, Apache-2.0).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

TOKENIZER_DIR = Path(__file__).with_name("mpnet_tokenizer")
CLS_ID = 105
SEP_ID = 106
PAD_ID = 0


@functools.lru_cache(maxsize=1)
def hf_tokenizer():
    """The bundled MPNet WordPiece tokenizer (loaded once, never from the network)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


def token_ids(text: str, max_length: int = 256) -> list[int]:
    """SAT's ids for one prompt: cut to `max_length`, keeping `[SEP]` as the last id."""
    tok = hf_tokenizer()
    ids = [CLS_ID] + tok.convert_tokens_to_ids(tok.tokenize(text)) + [SEP_ID]
    if len(ids) > max_length:
        ids = ids[:max_length]
        ids[-1] = SEP_ID
    return ids


def tokenize(texts: list[str], max_length: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of prompts -> (ids (N, L) int64 padded with 0, attention mask (N, L) = ids > 0)."""
    rows = [token_ids(t, max_length) for t in texts]
    length = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, (ids > 0).long()
