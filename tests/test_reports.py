"""results.json rows, the before/after table and the model card, from a Trainer log history."""

import pytest

from whisper_gl.reports import before_after_table, evaluation_rows, markdown_table, model_card


def _eval(step, wer, loss=1.0):
    return {"step": step, "eval_loss": loss, "eval_wer": wer, "eval_cer": wer / 2, "eval_wer_ortho": wer + 10,
            "eval_cer_ortho": wer / 2 + 5, "eval_runtime": 3.0}


LOG = [
    _eval(0, 90.0, 3.0),
    {"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}, _eval(2, 50.0, 1.5),
    {"step": 3, "loss": 0.5}, {"step": 4, "loss": 0.3}, _eval(4, 60.0, 1.8),
    {"step": 4, "train_runtime": 10.0, "train_loss": 0.95},
]


def test_rows_pair_each_evaluation_with_the_mean_train_loss_since_the_previous_one():
    rows = evaluation_rows(LOG)
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert rows[0]["train_loss"] is None  # step 0 is the untuned base
    assert rows[1]["train_loss"] == pytest.approx(1.5)
    assert rows[2]["train_loss"] == pytest.approx(0.4)
    assert rows[2]["wer_ortho"] == 70.0 and rows[2]["eval_loss"] == 1.8


def _results():
    rows = evaluation_rows(LOG)
    return {"base_model": "openai/whisper-base", "features": "someone/features-gl", "language": "gl",
            "task": "transcribe", "preset": "smoke", "hyperparameters": {"max_steps": 4, "learning_rate": 5e-05},
            "train_clips": 12, "test_clips": 4, "evaluations": rows, "best_step": 2,
            "before": rows[0], "after": rows[1]}


def test_before_after_table_shows_base_and_best_step():
    table = before_after_table(_results())
    base_line = next(line for line in table.splitlines() if line.startswith("base"))
    tuned_line = next(line for line in table.splitlines() if line.startswith("fine-tuned"))
    assert "4 held-out test clips" in table
    assert base_line.split()[-4:] == ["90.00", "45.00", "100.00", "50.00"]
    assert "step 2" in tuned_line and tuned_line.split()[-4:] == ["50.00", "25.00", "60.00", "30.00"]


def test_markdown_table_has_one_line_per_evaluation():
    lines = markdown_table(evaluation_rows(LOG)).splitlines()
    assert len(lines) == 2 + 3
    assert lines[2].startswith("| 0 | - | 3.0000 | 90.00 |")


def test_model_card_carries_hub_metadata_and_the_results():
    from huggingface_hub import ModelCard

    card = ModelCard(model_card(_results()))
    data = card.data.to_dict()
    assert data["language"] == "gl" and data["license"] == "apache-2.0"
    assert data["base_model"] == "openai/whisper-base" and data["datasets"] == ["someone/features-gl"]
    metrics = data["model-index"][0]["results"][0]["metrics"]
    assert {"type": "wer", "value": 50.0, "name": "WER (normalised)"} in metrics
    assert "best step 2" in card.text and "| 4 | 0.4000 |" in card.text


def test_the_table_names_the_selection_split_and_warns_when_it_is_test():
    honest = {**_results(), "selection": {"split": "validation", "clips": 8, "from": "validation",
                                          "optimistic": False}}
    assert "chosen on 8 validation clips; test scored once, at the end" in before_after_table(honest)
    seed = {**_results(), "selection": {"split": "test", "clips": 4, "from": "test", "optimistic": True}}
    assert "selected and reported on the same split: optimistic" in before_after_table(seed)
    scores = {"wer": 45.6, "wer_low": 38.9, "wer_high": 52.7, "cer": 20.0, "cer_low": 15.0, "cer_high": 25.0,
              "wer_ortho": 50.0, "cer_ortho": 22.0}
    assert "45.60 (38.90–52.70)" in before_after_table({**honest, "after": scores})
