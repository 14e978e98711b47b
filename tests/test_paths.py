"""whisper_gl.paths: one home for what whisper-gl makes, the same from any folder."""

import json
import subprocess
import sys
from pathlib import Path

from whisper_gl import paths
from whisper_gl.config import EvaluateConfig, FeatureConfig, OfflineModelConfig, SampleCorpusConfig, TrainConfig


def test_the_home_is_the_variable_else_the_xdg_cache_else_dot_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.delenv("WHISPER_GL_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert paths.home().root == tmp_path / "me" / ".cache" / "whisper-gl"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec ignores a relative one
    assert paths.home().root == tmp_path / "me" / ".cache" / "whisper-gl"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.home().root == tmp_path / "xdg" / "whisper-gl"
    monkeypatch.setenv("WHISPER_GL_HOME", "mine")  # relative: made absolute once, where it was set
    assert paths.home().root == tmp_path / "mine"
    assert paths.home().base_model == tmp_path / "mine" / "whisper-base"


def test_every_default_location_is_absolute_under_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_GL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    home = paths.home()
    corpus, evaluation, train = SampleCorpusConfig(), EvaluateConfig(), TrainConfig()
    assert (corpus.output_dir, corpus.examples_dir) == (str(home.sample_corpus), str(home.examples))
    assert (evaluation.dataset, evaluation.output_dir) == ([str(home.sample_corpus)], str(home.evaluation))
    assert (train.features, train.output_dir) == (str(home.features), str(home.fine_tuned_model))
    assert (FeatureConfig().dataset, FeatureConfig().output_dir) == (str(home.sample_corpus), str(home.features))
    assert OfflineModelConfig().output_dir == str(home.base_model)
    assert Path(corpus.sentences) == paths.sentences_file() and paths.sentences_file().is_file()
    everything = [corpus.output_dir, corpus.examples_dir, corpus.sentences, evaluation.output_dir, train.features,
                  train.output_dir, OfflineModelConfig().output_dir]
    assert all(Path(location).is_absolute() for location in everything)


def test_a_missing_input_names_its_full_path_and_for_an_example_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHISPER_GL_HOME", str(tmp_path / "home"))
    assert paths.missing_file("talks/x.mp3") == f"{tmp_path / 'talks/x.mp3'}: missing file"
    assert paths.missing_file("Resources/examples/short.mp3") == (
        f"{tmp_path / 'Resources/examples/short.mp3'}: missing file (the example clips are made by "
        f"`whisper-gl examples`, which writes them to {tmp_path / 'home/examples'})")


def _installed_from(monkeypatch, recorded: dict | None):
    from importlib import metadata

    class Distribution:
        def read_text(self, name):
            return None if recorded is None else json.dumps(recorded)

    monkeypatch.setattr(metadata, "distribution", lambda name: Distribution())


def test_the_install_hint_names_where_the_package_came_from(tmp_path, monkeypatch):
    """An extra is added from the checkout or the wheel the package was installed from (pip
    records it), else from the package index."""
    wheel = tmp_path / "whisper_gl-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    _installed_from(monkeypatch, {"url": wheel.as_uri(), "archive_info": {}})
    assert paths.install_command("base") == f"pip install '{wheel}[base]'"
    _installed_from(monkeypatch, {"url": tmp_path.as_uri(), "dir_info": {"editable": True}})
    assert paths.install_command("youtube") == f"pip install -e '{tmp_path}[youtube]'"
    wheel.unlink()  # gone since: the index is all that is left
    _installed_from(monkeypatch, {"url": wheel.as_uri(), "archive_info": {}})
    assert paths.install_command("base") == "pip install 'whisper-gl[base]'"
    _installed_from(monkeypatch, None)
    assert paths.install_command("train") == "pip install 'whisper-gl[train]'"


def test_this_checkout_is_named_as_the_source_of_its_extras():
    run = subprocess.run([sys.executable, "-c", "from whisper_gl.paths import install_command as c; print(c('base'))"],
                         capture_output=True, text=True, cwd="/", check=True)
    repo = Path(__file__).resolve().parents[1]
    assert run.stdout.strip() in (f"pip install -e '{repo}[base]'", f"pip install '{repo}[base]'")


def test_the_checkout_door_to_the_sentences_is_the_package_data():
    repo = Path(__file__).resolve().parents[1]
    assert (repo / "Resources/sentences.tsv").resolve() == paths.sentences_file().resolve()
