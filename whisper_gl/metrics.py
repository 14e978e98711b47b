"""Word and character error rates, orthographic and normalised, with jiwer.

Normalised scores use transformers' BasicTextNormalizer (lower case, punctuation and
symbols replaced by spaces, accents kept). Whisper's EnglishTextNormalizer is not used: it
spells English numbers and rewrites English contractions and spellings, which would
mangle Galician text. Orthographic scores compare the raw strings (case and punctuation
count as errors), as the seed reported them.

`evaluate.load("wer")` is not used: it fetches its metric script from the Hub and fails
offline; jiwer is what it wraps anyway.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jiwer
import numpy as np
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

METRIC_NAMES = ("wer", "cer", "wer_ortho", "cer_ortho")

_normalize = BasicTextNormalizer()


def normalize(text: str) -> str:
    """The text as the normalised metrics see it."""
    return _normalize(text).strip()


def _error_rates(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, float]:
    # jiwer refuses empty references; like Whisper's own evaluation, drop those pairs
    # (a reference made only of punctuation is empty once normalised).
    pairs = [(p.strip(), r.strip()) for p, r in zip(predictions, references) if r.strip()]
    if not pairs:
        raise ValueError("no non-empty reference to score against")
    hyps, refs = [p for p, _ in pairs], [r for _, r in pairs]
    return 100 * jiwer.wer(refs, hyps), 100 * jiwer.cer(refs, hyps)


def compute_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """WER and CER in percent: "wer"/"cer" normalised, "wer_ortho"/"cer_ortho" orthographic."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    wer_ortho, cer_ortho = _error_rates(predictions, references)
    wer, cer = _error_rates([normalize(p) for p in predictions], [normalize(r) for r in references])
    return {"wer": wer, "cer": cer, "wer_ortho": wer_ortho, "cer_ortho": cer_ortho}


def token_metrics(tokenizer) -> Callable[[object], dict[str, float]]:
    """A Trainer `compute_metrics`: decode generated and label ids, then score them; `clips` says
    how many were scored (under several processes: the gathered set, padding samples removed)."""

    # The Trainer pads with -100, which cannot be decoded; any special token can stand in.
    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def score(prediction) -> dict[str, float]:
        pred_ids = np.where(np.asarray(prediction.predictions) < 0, filler, prediction.predictions)
        label_ids = np.where(np.asarray(prediction.label_ids) < 0, filler, prediction.label_ids)
        predictions = tokenizer.batch_decode(pred_ids, skip_special_tokens=True)
        references = tokenizer.batch_decode(label_ids, skip_special_tokens=True)
        return {**compute_metrics(predictions, references), "clips": len(references)}

    return score
