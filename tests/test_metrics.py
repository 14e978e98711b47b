"""WER/CER, orthographic and normalised, and the Trainer adapter that decodes token ids."""

import numpy as np
import pytest

from whisper_gl.metrics import compute_metrics, normalize, token_metrics


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
