"""A small CLIP BPE tokenizer trained on the synthetic captions (for the tiny text-to-image model).

CLIP's own 49k-token vocabulary would make the tiny text encoder's embedding table larger than its
U-Net, so the miniature learns a byte-pair encoding with CLIP's conventions (lower-cased words,
word-final symbols end in ``</w>``, ``<|startoftext|>`` / ``<|endoftext|>``, padding with
end-of-text) on the generic captions, over every printable ASCII character so no text is unknown.

The BPE is learned here rather than with ``tokenizers``' trainer, whose tie-breaking varies from
run to run: each merge is the most frequent adjacent pair, ties going to the lexicographically
smallest pair, so the same captions always give the same vocabulary. It is saved in the layout
``CLIPTokenizer.from_pretrained`` reads (in transformers 5, ``CLIPTokenizer(vocab_file=...)``
would silently ignore the file).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
ALPHABET = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")  # CLIP's split, restricted to ASCII


def learn_merges(captions: Iterable[str], n_merges: int) -> list[tuple[str, str]]:
    """BPE merges in order: most frequent adjacent pair first, ties to the smallest pair."""
    words = Counter(w for text in captions for w in WORD.findall(text.lower()))
    seqs = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in words}
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter = Counter()
        for word, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                pairs[pair] += words[word]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for word, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[word] = tuple(out)
    return merges


def train_clip_bpe(captions: Iterable[str], vocab_size: int, max_length: int, out: Path):
    """Learn, save to ``out`` and return a ``CLIPTokenizer`` of at most ``vocab_size`` tokens."""
    from transformers import CLIPTokenizer

    base = ALPHABET + [c + "</w>" for c in ALPHABET]
    merges = learn_merges(captions, max(vocab_size - len(base) - 2, 0))
    tokens = base + [a + b for a, b in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    vocab[BOS], vocab[EOS] = len(vocab), len(vocab) + 1
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length,
                              bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return CLIPTokenizer.from_pretrained(out)
