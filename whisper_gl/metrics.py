"""Word and character error rates, orthographic and normalised, with jiwer, and how sure they are.

Normalised scores use transformers' BasicTextNormalizer (lower case, punctuation and
symbols replaced by spaces, accents kept). Whisper's EnglishTextNormalizer is not used: it
spells English numbers and rewrites English contractions and spellings, which would
mangle Galician text. Orthographic scores compare the raw strings (case and punctuation
count as errors), as the seed reported them.

A corpus score is the errors summed over utterances divided by the reference words (or
characters) summed over them: jiwer's corpus WER. Its 95 % confidence interval comes from a
bootstrap over utterances (fixed seed, BOOTSTRAP_RESAMPLES resamples): with a small test set
"45.6 % (38.9-52.7)" tells when two models do not really differ.

`evaluate.load("wer")` is not used: it fetches its metric script from the Hub and fails
offline; jiwer is what it wraps anyway.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import jiwer
import numpy as np
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

METRIC_NAMES = ("wer", "cer", "wer_ortho", "cer_ortho")
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0

_normalize = BasicTextNormalizer()


def normalize(text: str) -> str:
    """The text as the normalised metrics see it."""
    return _normalize(text).strip()


@dataclass(frozen=True)
class Errors:
    """Edit counts of one hypothesis against its reference, in words or characters."""

    reference_length: int
    substitutions: int
    insertions: int
    deletions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.insertions + self.deletions

    @property
    def rate(self) -> float:
        """In percent (above 100 when the hypothesis inserts more than the reference holds)."""
        return 100 * self.errors / self.reference_length


def _count(output) -> Errors:
    return Errors(output.hits + output.substitutions + output.deletions,
                  output.substitutions, output.insertions, output.deletions)


@dataclass(frozen=True)
class Utterance:
    """One transcript scored four ways: words and characters, normalised and orthographic."""

    reference: str
    hypothesis: str
    words: Errors
    chars: Errors
    words_ortho: Errors
    chars_ortho: Errors

    def by_metric(self) -> dict[str, Errors]:
        return dict(zip(METRIC_NAMES, (self.words, self.chars, self.words_ortho, self.chars_ortho)))


def score_utterance(hypothesis: str, reference: str) -> Utterance | None:
    """The errors of one transcript; None when the reference is empty once normalised
    (jiwer refuses empty references; like Whisper's own evaluation, such pairs are skipped)."""
    hypothesis, reference = hypothesis.strip(), reference.strip()
    normal_hypothesis, normal_reference = normalize(hypothesis), normalize(reference)
    if not normal_reference:
        return None
    return Utterance(
        reference, hypothesis,
        words=_count(jiwer.process_words(normal_reference, normal_hypothesis)),
        chars=_count(jiwer.process_characters(normal_reference, normal_hypothesis)),
        words_ortho=_count(jiwer.process_words(reference, hypothesis)),
        chars_ortho=_count(jiwer.process_characters(reference, hypothesis)),
    )


def score_utterances(predictions: Sequence[str], references: Sequence[str]) -> list[Utterance]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scored = [score_utterance(p, r) for p, r in zip(predictions, references)]
    scored = [utterance for utterance in scored if utterance is not None]
    if not scored:
        raise ValueError("no non-empty reference to score against")
    return scored


def corpus_scores(utterances: Sequence[Utterance], *, intervals: bool = False) -> dict[str, float]:
    """Corpus WER/CER in percent ("wer", "cer", "wer_ortho", "cer_ortho"); with `intervals`
    also each one's bootstrap confidence interval as "<name>_low" and "<name>_high", when there
    are at least two utterances: resampling a single one gives back the same rate every time,
    an interval of zero width that would claim a certainty the one recording cannot give."""
    intervals = intervals and len(utterances) > 1
    scores = {}
    for name in METRIC_NAMES:
        counts = [utterance.by_metric()[name] for utterance in utterances]
        errors = np.array([count.errors for count in counts], dtype=float)
        lengths = np.array([count.reference_length for count in counts], dtype=float)
        scores[name] = float(100 * errors.sum() / lengths.sum())
        if intervals:
            scores[f"{name}_low"], scores[f"{name}_high"] = bootstrap_interval(errors, lengths)
    return scores


def compute_metrics(predictions: Sequence[str], references: Sequence[str], *,
                    intervals: bool = False) -> dict[str, float]:
    """WER and CER in percent: "wer"/"cer" normalised, "wer_ortho"/"cer_ortho" orthographic;
    with `intervals`, their 95 % bootstrap confidence intervals too (see `corpus_scores`)."""
    return corpus_scores(score_utterances(predictions, references), intervals=intervals)


def bootstrap_rates(errors, lengths, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """The corpus rate sum(errors) / sum(lengths), in percent, of `resamples` bootstrap resamples:
    each draws as many utterances as there are, with replacement (numpy's generator with `seed`,
    so the result is repeatable)."""
    errors, lengths = np.asarray(errors, dtype=float), np.asarray(lengths, dtype=float)
    rng = np.random.default_rng(seed)
    rates = []
    for first in range(0, resamples, 100):  # blocks keep memory at 100 x utterances
        picks = rng.integers(0, len(errors), size=(min(100, resamples - first), len(errors)))
        rates.append(100 * errors[picks].sum(axis=1) / np.maximum(lengths[picks].sum(axis=1), 1))
    return np.concatenate(rates)


def bootstrap_interval(errors, lengths, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval: the central `confidence` share of `bootstrap_rates`."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(bootstrap_rates(errors, lengths, resamples=resamples, seed=seed), [tail, 100 - tail])
    return float(low), float(high)


def with_interval(scores: dict[str, float], name: str, digits: int = 1) -> str:
    """"45.6 (38.9-52.7)", or "45.6" when the scores carry no interval."""
    value = f"{scores[name]:.{digits}f}"
    if f"{name}_low" not in scores:
        return value
    return f"{value} ({scores[f'{name}_low']:.{digits}f}–{scores[f'{name}_high']:.{digits}f})"


def word_confusions(utterances: Sequence[Utterance], top: int = 10) -> list[tuple[str, str, int]]:
    """The most frequent normalised word substitutions (reference word, hypothesis word, count)."""
    substitutions: Counter = Counter()
    for utterance in utterances:
        output = jiwer.process_words(normalize(utterance.reference), normalize(utterance.hypothesis) or "")
        substitutions.update(jiwer.collect_error_counts(output)[0])
    return [(reference, hypothesis, count) for (reference, hypothesis), count in substitutions.most_common(top)]


def token_metrics(tokenizer, *, intervals: bool = True) -> Callable[[object], dict[str, float]]:
    """A Trainer `compute_metrics`: decode generated and label ids, then score them (with CIs);
    `clips` says how many were scored (under several processes: the gathered set, padding
    samples removed)."""

    # The Trainer pads with -100, which cannot be decoded; any special token can stand in.
    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def score(prediction) -> dict[str, float]:
        pred_ids = np.where(np.asarray(prediction.predictions) < 0, filler, prediction.predictions)
        label_ids = np.where(np.asarray(prediction.label_ids) < 0, filler, prediction.label_ids)
        predictions = tokenizer.batch_decode(pred_ids, skip_special_tokens=True)
        references = tokenizer.batch_decode(label_ids, skip_special_tokens=True)
        return {**compute_metrics(predictions, references, intervals=intervals), "clips": len(references)}

    return score
