"""whisper_gl.sources: every source kind reads into its output splits with `audio` + `sentence`:
plain rows for local folders (no `datasets` needed), a DatasetDict for the feature stage."""

import sys
import time

import datasets
import pytest

from whisper_gl import WhisperGLError
from whisper_gl.sources import as_dataset_dict, load_source

TRAIN = [("a.mp3", "Bos días."), ("b.mp3", 'Dixo "ola" e marchou.')]  # Common Voice quotes nothing
DEV = [("c.mp3", "Vai chover.")]
TEST = [("d.mp3", "Ata mañá.")]


@pytest.fixture
def release(tmp_path, write_common_voice):
    return write_common_voice(tmp_path / "cv-corpus-23.0-2025-09-05" / "gl",
                              {"train": TRAIN, "dev": DEV, "test": TEST, "validated": TRAIN + DEV + TEST})


def _rows(dataset):
    return [(row["audio"]["path"].rsplit("/", 1)[-1], row["sentence"]) for row in dataset]


SEED_SPLITS = {"train": "train+validation", "test": "test"}  # the seed's recipe


def _check_shape(loaded, splits=("train", "test")):
    """The splits asked for, each row an undecoded audio {"path", "bytes"} and a sentence; and
    the same rows as a DatasetDict with Audio(decode=False) for the feature stage."""
    assert set(loaded) == set(splits)
    for rows in loaded.values():
        assert all(set(row) == {"audio", "sentence"} and set(row["audio"]) == {"path", "bytes"} for row in rows)
    converted = as_dataset_dict(loaded)
    assert isinstance(converted, datasets.DatasetDict) and set(converted) == set(splits)
    for split, dataset in converted.items():
        assert dataset.column_names == ["audio", "sentence"]
        assert dataset.features["audio"] == datasets.Audio(decode=False)
        assert _rows(dataset) == _rows(loaded[split])


def test_common_voice_release_keeps_its_three_splits(release):
    loaded = load_source(str(release))
    _check_shape(loaded, ("train", "validation", "test"))
    assert (_rows(loaded["train"]), _rows(loaded["validation"]), _rows(loaded["test"])) == (TRAIN, DEV, TEST)
    seed = load_source(str(release), SEED_SPLITS)
    assert _rows(seed["train"]) == TRAIN + DEV and set(seed) == {"train", "test"}  # train + dev (validation)
    _check_shape(seed)
    path = loaded["train"][0]["audio"]["path"]
    assert path == str((release / "clips" / "a.mp3").resolve())


def test_common_voice_parent_folder_and_custom_splits(release):
    parent = release.parent
    assert _rows(load_source(str(parent))["test"]) == TEST
    loaded = load_source(str(parent), {"train": "train", "test": "validation+test"})
    assert _rows(loaded["train"]) == TRAIN and _rows(loaded["test"]) == DEV + TEST
    with pytest.raises(WhisperGLError, match="'validation' cannot go into both train and test"):
        load_source(str(parent), {"train": "train+validation", "test": "validation+test"})


def test_common_voice_parent_with_several_locales(release, write_common_voice):
    write_common_voice(release.parent / "es", {"train": TRAIN, "test": TEST})
    with pytest.raises(WhisperGLError, match="several Common Voice locales .*--config"):
        load_source(str(release.parent))
    assert _rows(load_source(str(release.parent), SEED_SPLITS, config="gl")["train"]) == TRAIN + DEV
    with pytest.raises(WhisperGLError, match="no Common Voice locale folder 'pt'"):
        load_source(str(release.parent), config="pt")


def test_missing_split_is_skipped_but_not_all(release, capsys):
    (release / "dev.tsv").unlink()
    assert _rows(load_source(str(release), SEED_SPLITS)["train"]) == TRAIN
    assert "no 'validation' split" in capsys.readouterr().out
    assert set(load_source(str(release))) == {"train", "test"}  # validation is optional: said, not fatal
    assert "no validation split for validation" in capsys.readouterr().out
    with pytest.raises(WhisperGLError, match="none of the splits other for test .*--test-split"):
        load_source(str(release), {"train": "train", "test": "other"})


def test_tsv_missing_columns(release):
    (release / "test.tsv").write_text("client_id\tpath\tup_votes\nx\td.mp3\t1\n")
    with pytest.raises(WhisperGLError, match=r"test.tsv' lacks the column\(s\) sentence"):
        load_source(str(release))


def test_audiofolder(tmp_path):
    (tmp_path / "one.wav").write_bytes(b"RIFF")  # sources do not decode: any bytes do
    (tmp_path / "two.wav").write_bytes(b"RIFF")
    (tmp_path / "metadata.csv").write_text("file_name,transcription,speaker\none.wav,Ola.,x\ntwo.wav,Adeus.,y\n")
    loaded = load_source(str(tmp_path), {"test": "train"})
    _check_shape(loaded, ("test",))
    assert _rows(loaded["test"]) == [("one.wav", "Ola."), ("two.wav", "Adeus.")]

    (tmp_path / "metadata.csv").write_text("file_name,frase\none.wav,Ola.\ntwo.wav,Adeus.\n")
    assert _rows(load_source(str(tmp_path), {"test": "train"}, text_column="frase")["test"])[0] == ("one.wav", "Ola.")
    with pytest.raises(WhisperGLError, match="no text column .*--text-column"):
        load_source(str(tmp_path), {"test": "train"})


def test_audiofolder_with_split_folders(tmp_path):
    for split, text in (("train", "Ola."), ("test", "Adeus.")):
        (tmp_path / split).mkdir()
        (tmp_path / split / "clip.wav").write_bytes(b"RIFF")
        (tmp_path / split / "metadata.csv").write_text(f"file_name,sentence\nclip.wav,{text}\n")
    loaded = load_source(str(tmp_path))
    assert [r["sentence"] for r in loaded["train"]] == ["Ola."] and [r["sentence"] for r in loaded["test"]] == ["Adeus."]


@pytest.mark.parametrize("make, message", [
    (lambda root: root, "not a dataset folder I know"),
    (lambda root: root / "no" / "such" / "folder", "dataset folder .* not found"),
    (lambda root: root / "file.txt", "is a file, not a dataset folder"),
])
def test_unknown_layouts(tmp_path, make, message):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "notes").mkdir()
    with pytest.raises(WhisperGLError, match=message) as caught:
        load_source(str(make(tmp_path)))
    assert "expected a Common Voice release folder" in str(caught.value)


def test_hub_dataset_offline_fails_fast_in_one_line():
    started = time.perf_counter()
    with pytest.raises(WhisperGLError) as caught:
        load_source("nobody-here/no-such-dataset", config="gl_es", revision="refs/convert/parquet")
    assert time.perf_counter() - started < 15  # datasets alone retries for ~25 s
    message = str(caught.value)
    assert "\n" not in message and "'nobody-here/no-such-dataset'" in message
    assert "made by `whisper-gl corpus`" in message and "cv-corpus-sample/gl" in message


def test_hub_dataset_is_read_with_its_columns_mapped(monkeypatch):
    """Everything after the network: split names, per-split loading, column mapping (FLEURS-like)."""
    import whisper_gl.sources as sources

    def fleurs_split(split):
        return datasets.Dataset.from_dict({
            "id": [1], "audio": [{"bytes": b"RIFF" + split.encode(), "path": f"{split}.wav"}],
            "transcription": [f"{split} ola"], "raw_transcription": [f"{split.title()}: Ola."],
        })

    loaded_splits = []
    monkeypatch.setattr(sources, "check_hub_dataset", lambda repo_id, revision=None: None)
    monkeypatch.setattr(datasets, "get_dataset_split_names",
                        lambda repo_id, config, revision=None: ["train", "validation", "test"])
    monkeypatch.setattr(datasets, "load_dataset", lambda repo_id, config, split, revision:
                        loaded_splits.append((repo_id, config, split, revision)) or fleurs_split(split))
    loaded = load_source("google/fleurs", SEED_SPLITS, config="gl_es", revision="refs/convert/parquet",
                         text_column="raw_transcription")
    _check_shape(loaded)
    assert [row["sentence"] for row in loaded["train"]] == ["Train: Ola.", "Validation: Ola."]
    assert loaded["test"][0]["audio"] == {"bytes": b"RIFFtest", "path": "test.wav"}
    assert loaded_splits[0] == ("google/fleurs", "gl_es", "train", "refs/convert/parquet")
    assert [row["sentence"] for row in load_source("google/fleurs", config="gl_es")["test"]] == ["test ola"]
    with pytest.raises(WhisperGLError, match="no audio column 'speech' .*--audio-column"):
        load_source("google/fleurs", config="gl_es", audio_column="speech")


def test_data_collective_needs_a_key(monkeypatch):
    monkeypatch.delenv("MDC_API_KEY", raising=False)
    with pytest.raises(WhisperGLError, match="set MDC_API_KEY"):
        load_source("common-voice-scripted-speech-23-0-galician")


def test_data_collective_needs_its_package(monkeypatch):
    monkeypatch.setenv("MDC_API_KEY", "test-key")
    monkeypatch.setitem(sys.modules, "datacollective", None)  # import fails
    with pytest.raises(WhisperGLError, match="pip install datacollective"):
        load_source("mdc:some-dataset")


def test_data_collective_download_is_read_as_common_voice(monkeypatch, tmp_path, write_common_voice):
    """The download itself needs the network; what it unpacks to is the Common Voice layout."""
    datacollective = pytest.importorskip("datacollective")
    extracted = tmp_path / "download"
    write_common_voice(extracted / "cv-corpus-23.0-2025-09-05" / "gl", {"train": TRAIN, "dev": DEV, "test": TEST})
    calls = []

    def fake_download(dataset_id, **kwargs):
        calls.append((dataset_id, kwargs))
        return extracted

    monkeypatch.setenv("MDC_API_KEY", "test-key")
    monkeypatch.setattr(datacollective, "download_dataset", fake_download)
    loaded = load_source("common-voice-scripted-speech-23-0-galician")
    assert calls == [("common-voice-scripted-speech-23-0-galician", {"extract": True})]
    assert _rows(loaded["train"]) == TRAIN and _rows(loaded["validation"]) == DEV and _rows(loaded["test"]) == TEST


def test_a_registered_source_is_tried_named_in_errors_and_read(tmp_path, monkeypatch):
    """A new kind of dataset is one registration in whisper_gl.sources: --dataset finds it, and the
    errors and the flag's help list it from the registry."""
    from whisper_gl import sources

    monkeypatch.setattr(sources, "SOURCES", dict(sources.SOURCES))  # the registration ends with the test
    lists = tmp_path / "clips.list"

    @sources.register_source("list", "a .list file of clip paths and sentences", lambda d: d.endswith(".list"))
    def _read_list(dataset, request):
        rows = [line.split("\t") for line in open(dataset, encoding="utf-8").read().splitlines()]
        return datasets.DatasetDict({split: datasets.Dataset.from_dict(
            {"audio": [path for path, _ in rows], "sentence": [text for _, text in rows]}) for split in request.wanted})

    lists.write_text("a.mp3\tBos días.\n", encoding="utf-8")
    assert sources.find_source("ghost.list").name == "list"
    loaded = load_source(str(lists), {"test": "test"}, optional=())
    assert [row["sentence"] for row in loaded["test"]] == ["Bos días."]
    with pytest.raises(WhisperGLError, match="a .list file of clip paths and sentences"):
        load_source(str(tmp_path))  # an empty folder: not a dataset; the error lists every kind
    assert "a .list file of clip paths" in sources.described_sources()


def test_the_dataset_flag_lists_every_registered_kind():
    from whisper_gl.config import SourceOptions
    from whisper_gl.sources import SOURCES

    help_text = SourceOptions.__dataclass_fields__["dataset"].metadata["help"]
    assert all(source.summary in help_text for source in SOURCES.values())


def test_audiofolder_jsonl_and_one_metadata_file_for_split_folders(tmp_path):
    """As datasets' audiofolder reads them: jsonl metadata; one top-level file whose file_name
    paths lie in split folders gives each row that folder's split (dev is validation)."""
    (tmp_path / "metadata.jsonl").write_text(
        '{"file_name": "train/a.wav", "text": "Ola."}\n\n{"file_name": "dev/b.wav", "text": "Vai chover."}\n'
        '{"file_name": "test/c.wav", "text": "Adeus."}\n', encoding="utf-8")
    loaded = load_source(str(tmp_path))
    _check_shape(loaded, ("train", "validation", "test"))
    assert [_rows(loaded[split]) for split in ("train", "validation", "test")] == \
        [[("a.wav", "Ola.")], [("b.wav", "Vai chover.")], [("c.wav", "Adeus.")]]
    assert loaded["test"][0]["audio"]["path"] == str(tmp_path.resolve() / "test" / "c.wav")


@pytest.mark.parametrize("metadata, message", [
    ("speaker,text\nx,Ola.\n", "has no file_name column"),
    ('{"file_name": "a.wav", "text": "Ola."}\nnot json\n', "could not read the audiofolder metadata"),
])
def test_audiofolder_bad_metadata_is_one_line(tmp_path, metadata, message):
    name = "metadata.csv" if metadata.startswith("speaker") else "metadata.jsonl"
    (tmp_path / name).write_text(metadata)
    with pytest.raises(WhisperGLError, match=message) as caught:
        load_source(str(tmp_path), {"test": "train"})
    assert "\n" not in str(caught.value)


def test_local_sources_need_no_datasets_and_the_hub_says_what_to_install(tmp_path, release, monkeypatch):
    """Evaluation on the core install: Common Voice folders and audiofolders are read without
    `datasets`; a Hub dataset needs it, and says how to get it."""
    from whisper_gl.paths import install_command

    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails, as on the core install
    assert _rows(load_source(str(release))["test"]) == TEST
    (tmp_path / "one.wav").write_bytes(b"RIFF")
    (tmp_path / "metadata.csv").write_text("file_name,text\none.wav,Ola.\n")
    assert _rows(load_source(str(tmp_path), {"test": "train"})["test"]) == [("one.wav", "Ola.")]
    with pytest.raises(WhisperGLError) as caught:
        load_source("nobody-here/no-such-dataset")
    assert str(caught.value) == (f"reading the Hub dataset 'nobody-here/no-such-dataset' needs `datasets`, of the "
                                 f"train extra: {install_command('train')}")
