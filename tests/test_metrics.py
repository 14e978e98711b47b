"""WER/CER, orthographic and normalised, and the Trainer adapter that decodes token ids."""

import numpy as np
import pytest

from whisper_gl.metrics import (bootstrap_interval, bootstrap_rates, compute_metrics, normalize, score_utterances,
                                token_metrics, with_interval, word_confusions)


def test_identical_text_scores_zero():
    scores = compute_metrics(["Hoxe fai frío."], ["Hoxe fai frío."])
    assert scores == {"wer": 0.0, "cer": 0.0, "wer_ortho": 0.0, "cer_ortho": 0.0}


def test_normalised_scores_ignore_case_and_punctuation_but_orthographic_do_not():
    scores = compute_metrics(["hoxe fai frío"], ["Hoxe fai frío."])
    assert scores["wer"] == 0 and scores["cer"] == 0
    # "hoxe" != "Hoxe" and "frío" != "frío.": 2 of 3 words wrong orthographically.
    assert scores["wer_ortho"] == pytest.approx(200 / 3)
    assert scores["cer_ortho"] == pytest.approx(100 * 2 / len("Hoxe fai frío."))


def test_accents_count_after_normalisation():
    # Galician spelling: a lost accent is a different word, so the normaliser keeps accents.
    assert normalize("Mañá, á PRAIA!") == "mañá á praia"
    assert compute_metrics(["fai frio"], ["fai frío"])["wer"] == 50.0


def test_error_counts_over_the_whole_corpus():
    # 1 substitution + 1 deletion over 4 + 2 reference words.
    scores = compute_metrics(["a x c", "e f"], ["a b c d", "e f"])
    assert scores["wer"] == pytest.approx(100 * 2 / 6)
    assert compute_metrics(["abce"], ["abcd"])["cer"] == pytest.approx(25.0)


def test_empty_references_are_skipped_and_all_empty_is_an_error():
    scores = compute_metrics(["x", "ola"], ["", "ola"])
    assert scores["wer"] == 0.0 and scores["wer_ortho"] == 0.0
    with pytest.raises(ValueError):
        compute_metrics(["x"], ["  "])
    with pytest.raises(ValueError):
        compute_metrics(["a", "b"], ["a"])


def test_token_metrics_decodes_ids_padded_with_minus_100(base_model_dir):
    from transformers import EvalPrediction, WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(base_model_dir)
    tokenizer.set_prefix_tokens(language="gl", task="transcribe")
    sentences = ["Hoxe fai moito frío en Lugo.", "Bos días."]
    ids = [tokenizer(s).input_ids for s in sentences]
    width = max(map(len, ids)) + 3
    labels = np.full((2, width), -100)
    for row, seq in enumerate(ids):
        labels[row, : len(seq)] = seq
    predictions = labels.copy()
    predictions[1, : len(ids[1])] = tokenizer("Bos noites.").input_ids[: len(ids[1])]

    scores = token_metrics(tokenizer)(EvalPrediction(predictions=predictions, label_ids=labels))
    # One of 8 normalised words differs ("días" -> "noites").
    assert scores["wer"] == pytest.approx(100 / 8)
    assert scores["clips"] == 2  # how many clips were scored (checked under several processes)


def test_intervals_come_with_every_score_and_hold_the_score():
    scores = compute_metrics(["a x c", "e f", "g", "h i j"], ["a b c d", "e f", "g h", "h i j"], intervals=True)
    for name in ("wer", "cer", "wer_ortho", "cer_ortho"):
        assert scores[f"{name}_low"] <= scores[name] <= scores[f"{name}_high"]
    assert with_interval(scores, "wer") == f"{scores['wer']:.1f} ({scores['wer_low']:.1f}–{scores['wer_high']:.1f})"
    assert with_interval({"wer": 12.34}, "wer") == "12.3"
    assert compute_metrics(["a b", "c"], ["a b", "c"], intervals=True)["wer_high"] == 0.0  # no error, no doubt


def test_bootstrap_against_the_exact_distribution():
    """Three one-word utterances with 0, 1 and 2 errors: a resample's errors are the sum of three
    draws from {0, 1, 2}, so P(rate = 0 %) = P(rate = 200 %) = 1/27 and P(rate = 100 %) = 7/27;
    the 95 % interval then runs from 0 % to 200 % (each end holds more than 2.5 %)."""
    rates = bootstrap_rates([0, 1, 2], [1, 1, 1], resamples=20_000, seed=1)
    assert np.mean(rates == 0) == pytest.approx(1 / 27, abs=0.004)
    assert np.mean(rates == 100) == pytest.approx(7 / 27, abs=0.01)
    assert np.mean(rates == 200) == pytest.approx(1 / 27, abs=0.004)
    assert bootstrap_interval([0, 1, 2], [1, 1, 1], resamples=20_000, seed=1) == (0.0, 200.0)
    # every utterance alike: no spread; the same seed gives the same interval
    assert bootstrap_interval([1, 1, 1], [4, 4, 4]) == (25.0, 25.0)
    assert bootstrap_interval([0, 3, 1, 5], [9, 4, 6, 8]) == bootstrap_interval([0, 3, 1, 5], [9, 4, 6, 8])


def test_utterance_counts_add_up_to_jiwer_corpus_scores():
    import jiwer

    hyps, refs = ["a x c", "e f g", "kk"], ["a b c d", "e f", "h i j"]
    utterances = score_utterances(hyps, refs)
    assert [u.words.errors for u in utterances] == [2, 1, 3]
    assert [(u.words.substitutions, u.words.insertions, u.words.deletions) for u in utterances] == \
        [(1, 0, 1), (0, 1, 0), (1, 0, 2)]
    assert compute_metrics(hyps, refs)["wer"] == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert word_confusions(utterances) == [("b", "x", 1), ("h", "kk", 1)]


def test_a_single_utterance_has_no_interval():
    """Resampling one recording gives back its own rate every time: a zero-width "interval"
    (87.8 (87.8–87.8)) would claim a certainty one recording cannot give, so there is none."""
    one = compute_metrics(["o can ladra"], ["o can non ladra"], intervals=True)
    assert one["wer"] == 25.0 and not [name for name in one if name.endswith(("_low", "_high"))]
    assert with_interval(one, "wer") == "25.0"
    two = compute_metrics(["o can ladra", "bos días"], ["o can non ladra", "bos días"], intervals=True)
    assert two["wer_low"] < two["wer_high"]
