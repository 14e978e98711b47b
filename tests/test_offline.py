"""The offline Whisper base: CTranslate2 model.bin -> transformers checkpoint.

Fast tests check the mapping exactly on a tiny random Whisper sent through CTranslate2's own
converter and back; slow tests compare the real converted base model with CTranslate2 itself.
"""

import json

import numpy as np
import pytest
import torch

from whisper_gl import WhisperGLError, offline

GALICIAN_PROMPT = ["<|startoftranscript|>", "<|gl|>", "<|transcribe|>", "<|notimestamps|>"]


# --------------------------------------------------------------------------- fast: the mapping


@pytest.fixture(scope="module")
def package_dir():
    return offline._package_data(offline.PACKAGES[0])


@pytest.fixture(scope="module")
def tiny_round_trip(tmp_path_factory, package_dir):
    """A tiny random Whisper (every weight random, biases included), written as CTranslate2 by
    ctranslate2's own converter: the independent reference for our reader and mapping."""
    import ctranslate2
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = offline.build_tokenizer(package_dir, 448)
    config = WhisperConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=2, decoder_layers=3,
                           encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=32,
                           decoder_ffn_dim=24, max_source_positions=1500, max_target_positions=448)
    torch.manual_seed(0)
    tiny = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in tiny.parameters():
            parameter.normal_()
    ct2_config = json.loads((package_dir / "config.json").read_text())
    tiny.generation_config = offline.generation_config(tokenizer, ct2_config, 448)
    tiny.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    ctranslate2.converters.TransformersConverter(str(root / "hf"), copy_files=["tokenizer.json"]).convert(
        str(root / "ct2"), quantization="float32")
    return tiny, root / "ct2"


def test_reader_sees_every_array_of_ctranslate2s_writer(tiny_round_trip):
    tiny, ct2_dir = tiny_round_trip
    ct2 = offline.read_ct2_model(ct2_dir / "model.bin")
    assert (ct2.spec, ct2.revision) == ("WhisperSpec", 3)
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    embeddings = tiny.model.decoder.embed_tokens.weight.detach().numpy()
    np.testing.assert_array_equal(ct2.variables["decoder/embeddings/weight"], embeddings)
    assert int(ct2.variables["decoder/num_heads"]) == 4


def test_round_trip_restores_every_weight_exactly(tiny_round_trip):
    tiny, ct2_dir = tiny_round_trip
    model, processor = offline.convert(ct2_dir)
    for name in ("encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                 "encoder_ffn_dim", "decoder_ffn_dim", "d_model", "vocab_size"):
        assert getattr(model.config, name) == getattr(tiny.config, name), name
    expected, got = tiny.state_dict(), model.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight  # tied, as in Whisper
    assert processor.feature_extractor.feature_size == 80


def test_unused_arrays_fail_loudly(tiny_round_trip, monkeypatch):
    _, ct2_dir = tiny_round_trip
    read = offline.read_ct2_model

    def with_extra_array(path):
        ct2 = read(path)
        ct2.variables["encoder/layer_0/mystery/weight"] = np.zeros(3, np.float32)
        return ct2

    monkeypatch.setattr(offline, "read_ct2_model", with_extra_array)
    with pytest.raises(WhisperGLError, match="no place in Whisper.*mystery"):
        offline.convert(ct2_dir)


def test_missing_array_fails_loudly(tiny_round_trip, monkeypatch):
    _, ct2_dir = tiny_round_trip
    read = offline.read_ct2_model

    def without_fc(path):
        ct2 = read(path)
        del ct2.variables["decoder/layer_2/ffn/linear_1/bias"]
        return ct2

    monkeypatch.setattr(offline, "read_ct2_model", without_fc)
    with pytest.raises(WhisperGLError, match="no array 'decoder/layer_2/ffn/linear_1/bias'"):
        offline.convert(ct2_dir)


@pytest.mark.parametrize("damage, message", [
    (lambda data: (7).to_bytes(4, "little") + data[4:], "binary version 7"),
    (lambda data: data[: len(data) // 2], "not a valid CTranslate2 model"),
    (lambda data: data + b"\0\0", "trailing bytes"),
])
def test_corrupt_model_bin(tiny_round_trip, tmp_path, damage, message):
    _, ct2_dir = tiny_round_trip
    broken = tmp_path / "model.bin"
    broken.write_bytes(damage((ct2_dir / "model.bin").read_bytes()))
    with pytest.raises(WhisperGLError, match=message):
        offline.read_ct2_model(broken)


def test_missing_package_names_the_fix(monkeypatch, tmp_path):
    from whisper_gl.paths import install_command

    monkeypatch.setattr(offline, "PACKAGES", ("no_such_whisper_package", offline.PACKAGES[1]))
    with pytest.raises(WhisperGLError, match=r"comes from PyPI packages that are not installed: pip install ") as caught:
        offline.ensure_base_model(tmp_path / "base")
    assert str(caught.value).endswith(install_command("base")) and "[base]'" in str(caught.value)
    assert not (tmp_path / "base").exists()
    assert list(tmp_path.iterdir()) == []  # no half-written folder left behind


# --------------------------------------------------------------------------- slow: the real base model


@pytest.fixture(scope="module")
def converted(base_model_dir):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(base_model_dir).eval()
    processor = WhisperProcessor.from_pretrained(base_model_dir)
    return model, processor


@pytest.fixture(scope="module")
def clips(sample_corpus_dir, converted):
    """Log-mel input of a few test clips (one feature extractor for both models), with references."""
    from whisper_gl.sample_corpus import read_tsv

    rows = read_tsv(sample_corpus_dir / "test.tsv")[:4]
    audio = [_decode(sample_corpus_dir / "clips" / row["path"]) for row in rows]
    features = converted[1].feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features
    return np.ascontiguousarray(features), [row["sentence"] for row in rows]


def _decode(path):
    import subprocess

    pcm = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
                          "-ar", "16000", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(pcm, np.float32)


@pytest.fixture(scope="module")
def reference(base_model_dir):
    import ctranslate2

    return ctranslate2.models.Whisper(str(base_model_dir / "ctranslate2"), device="cpu", compute_type="float32")


@pytest.mark.slow
def test_checkpoint_folder(base_model_dir, converted):
    model, processor = converted
    for name in offline.REQUIRED_FILES:
        assert (base_model_dir / name).is_file(), name
    assert json.loads((base_model_dir / "preprocessor_config.json").read_text())["feature_size"] == 80
    assert model.dtype == torch.float32
    assert (model.config.d_model, model.config.encoder_layers, model.config.vocab_size) == (512, 6, 51865)
    generation = json.loads((base_model_dir / "generation_config.json").read_text())
    assert generation["_from_model_config"] is False
    assert generation["lang_to_id"]["<|gl|>"] == processor.tokenizer.convert_tokens_to_ids("<|gl|>")
    assert generation["task_to_id"]["transcribe"] == processor.tokenizer.convert_tokens_to_ids("<|transcribe|>")
    assert generation["no_timestamps_token_id"] == processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    assert len(generation["alignment_heads"]) == 8 and generation["max_length"] == 448
    tokenizer = processor.tokenizer
    tokenizer.set_prefix_tokens(language="gl", task="transcribe")
    ids = tokenizer("Bos días.").input_ids
    assert ids[:4] == tokenizer.convert_tokens_to_ids(GALICIAN_PROMPT)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Bos días."


@pytest.mark.slow
@pytest.mark.model_output
@pytest.mark.ctranslate2
@pytest.mark.torch
def test_encoder_matches_ctranslate2(converted, clips, reference, record_property):
    import ctranslate2

    features, _ = clips
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(features)))
    with torch.no_grad():
        got = converted[0].model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    assert got.shape == expected.shape == (len(features), 1500, 512)
    difference = np.abs(got - expected).max()
    print(f"max |encoder difference| = {difference:.2e} (activations up to {np.abs(expected).max():.1f})")
    record_property("max_encoder_difference", float(difference))
    assert difference < 1e-2


@pytest.mark.slow
@pytest.mark.model_output
@pytest.mark.ctranslate2
@pytest.mark.torch
def test_greedy_transcripts_match_ctranslate2(converted, clips, reference):
    import ctranslate2

    model, processor = converted
    features, sentences = clips
    prompt = processor.tokenizer.convert_tokens_to_ids(GALICIAN_PROMPT)
    results = reference.generate(ctranslate2.StorageView.from_array(features), [prompt] * len(features),
                                 beam_size=1, max_length=128)
    expected = processor.batch_decode([r.sequences_ids[0] for r in results], skip_special_tokens=True)
    with torch.no_grad():
        ids = model.generate(torch.from_numpy(features), language="gl", task="transcribe", num_beams=1,
                             do_sample=False, max_new_tokens=128)
    got = processor.batch_decode(ids, skip_special_tokens=True)
    for sentence, ours, theirs in zip(sentences, got, expected):
        print(f"{sentence!r}: {ours!r}")
    assert got == expected
    assert all(text.strip() for text in got)


@pytest.mark.slow
@pytest.mark.model_output
@pytest.mark.torch
def test_generate_with_timestamps(converted, clips):
    model, processor = converted
    features, _ = clips
    with torch.no_grad():
        ids = model.generate(torch.from_numpy(features[:1]), language="gl", task="transcribe",
                             return_timestamps=True, max_new_tokens=64)
    first_timestamp = processor.tokenizer.convert_tokens_to_ids("<|0.00|>")
    assert (ids[0] >= first_timestamp).sum() >= 2  # a segment opens and closes
    text = processor.tokenizer.decode(ids[0], decode_with_timestamps=True)
    assert "<|0.00|>" in text


@pytest.mark.slow
def test_faster_whisper_loads_the_ctranslate2_folder(base_model_dir, sample_corpus_dir):
    from faster_whisper import WhisperModel

    from whisper_gl.sample_corpus import read_tsv

    fast = WhisperModel(str(base_model_dir / "ctranslate2"), device="cpu", compute_type="int8", cpu_threads=2)
    assert fast.feature_extractor.mel_filters.shape[0] == 80
    clip = sample_corpus_dir / "clips" / read_tsv(sample_corpus_dir / "test.tsv")[0]["path"]
    segments, info = fast.transcribe(str(clip), language="gl", beam_size=1, vad_filter=False)
    assert info.language == "gl"
    assert "".join(segment.text for segment in segments).strip()


def test_ensure_base_model_skips_a_complete_folder(tmp_path, monkeypatch):
    folder = tmp_path / "base"
    for name in offline.REQUIRED_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    monkeypatch.setattr(offline, "build_base_model", lambda *_: pytest.fail("rebuilt a complete folder"))
    assert offline.ensure_base_model(folder) == folder
    (folder / "model.safetensors").unlink()
    monkeypatch.setattr(offline, "build_base_model", lambda output_dir: "rebuilt")
    assert offline.ensure_base_model(folder) == "rebuilt"
