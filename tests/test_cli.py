"""The `whisper-gl` command: one verb per stage, flags built from the config dataclasses."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_gl import WhisperGLError, __version__
from whisper_gl.cli import COMMANDS, Group, config_parser, find_verb, invoke, parse_config
from whisper_gl.config import (AppConfig, DecodingOptions, FileAppConfig, ModelOptions, TrainConfig,
                               TranscribeConfig, YoutubeAppConfig)

REPO = Path(__file__).resolve().parents[1]
WHISPER_GL = Path(sys.executable).parent / "whisper-gl"  # the console script setup.sh installs
VERB_PATHS = [(command.name,) for command in COMMANDS if not isinstance(command, Group)] + [
    (command.name, verb.name) for command in COMMANDS if isinstance(command, Group) for verb in command.verbs]


def whisper_gl(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The installed console script, importing this checkout's package (as in a fresh clone)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([str(WHISPER_GL), *args], capture_output=True, text=True, timeout=120, env=env, **kwargs)


def help_text(*path: str) -> str:
    run = whisper_gl(*path, "--help")
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_console_script_lists_every_verb_with_one_line():
    assert WHISPER_GL.is_file(), "run scripts/setup.sh: it installs the project (pip install -e .[dev])"
    text = help_text()
    for verb in ("examples", "corpus", "offline-model", "features", "train", "export", "transcribe", "app", "deploy"):
        assert re.search(rf"^    {re.escape(verb)}\b", text, re.M), verb
    version = whisper_gl("--version")
    assert version.stdout.strip() == f"whisper-gl {__version__}" and __version__ != "0+unknown"


@pytest.mark.parametrize("path", VERB_PATHS, ids=" ".join)
def test_every_verb_help_has_dashed_flags_only_with_their_defaults(path):
    text = " ".join(help_text(*path).split())  # undo the line wrapping
    flags = set(re.findall(r"--[\w-]+", text))
    assert flags and not [flag for flag in flags if "_" in flag], flags
    metavars = set(re.findall(r"--[\w-]+ ([A-Z][A-Z0-9_-]*)\b", text))
    assert not [metavar for metavar in metavars if "_" in metavar], metavars
    verb = find_verb(*path)
    parser = config_parser(verb.config, verb.summary)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert all(flag in flags for flag in action.option_strings), action.option_strings
        if action.default is not None:
            assert "default" in action.help.lower(), (action.option_strings, action.help)
    fields = {field.name for field in dataclasses.fields(verb.config) if field.metadata.get("cli") is not False}
    assert fields == {action.dest for action in parser._actions if action.dest != "help"}


def test_booleans_are_flag_and_no_flag():
    assert parse_config(TrainConfig, "t", ["--lora"]).lora is True
    assert parse_config(TrainConfig, "t", ["--no-gradient-checkpointing"]).gradient_checkpointing is False
    assert parse_config(TrainConfig, "t", []).gradient_checkpointing is None  # the preset decides
    with pytest.raises(WhisperGLError, match="(see .* --help)"):
        parse_config(TrainConfig, "t", ["--lora", "true"])


def test_tuples_choices_and_positionals():
    config = parse_config(TranscribeConfig, "t", ["talk.mp3", "talks/", "--temperatures", "0", "0.4",
                                                   "--timestamps", "vad", "--format", "json,SRT", "txt", "json"])
    assert (config.paths, config.temperatures, config.timestamps) == (("talk.mp3", "talks/"), (0.0, 0.4), "vad")
    assert config.format == ("json", "srt", "txt")  # commas or spaces, in order, once each
    with pytest.raises(WhisperGLError, match="invalid choice: 'never'"):
        parse_config(TranscribeConfig, "t", ["talk.mp3", "--timestamps", "never"])
    with pytest.raises(WhisperGLError, match="unknown format 'doc'"):
        parse_config(TranscribeConfig, "t", ["talk.mp3", "--format", "txt,doc"])
    with pytest.raises(WhisperGLError, match="required: PATH"):
        parse_config(TranscribeConfig, "t", [])
    assert parse_config(TranscribeConfig, "t", ["a.mp3", "--highlight-words"]).word_timestamps is True


SERVER_FLAGS = {"host", "port", "max_minutes", "max_mb", "upload_store_mb", "max_upload_seconds", "min_upload_rate",
                "keep_alive_seconds", "concurrency", "queue_size", "shutdown_timeout"}
OWN_FLAGS = {"microphone": {"live_sessions", "stream_every"}, "file": set(), "youtube": {"max_download_seconds"}}


@pytest.mark.parametrize("kind", sorted(OWN_FLAGS))
def test_each_app_lists_the_engine_options_the_server_options_and_only_its_own(kind):
    engine = {f.name for f in dataclasses.fields(ModelOptions)} | {f.name for f in dataclasses.fields(DecodingOptions)}
    engine -= {f.name for f in dataclasses.fields(ModelOptions) if f.metadata.get("cli") is False}
    verb = find_verb("app", kind)
    shown = {action.dest for action in config_parser(verb.config, "a")._actions} - {"help"}
    assert shown - engine == SERVER_FLAGS | OWN_FLAGS[kind]
    assert engine <= shown
    usage = config_parser(verb.config, "a").format_help()
    assert "--host" in usage and "--port" in usage
    others = set().union(*OWN_FLAGS.values()) - OWN_FLAGS[kind]
    assert not any(f"--{name.replace('_', '-')}" in usage for name in others), usage
    # --port is taken, and the others' flags are refused as unknown
    assert parse_config(verb.config, "a", ["--port", "7870", "--host", "0.0.0.0"]).listen_on() == ("0.0.0.0", 7870)
    for name in others:
        with pytest.raises(WhisperGLError, match="unrecognized arguments"):
            parse_config(verb.config, "a", [f"--{name.replace('_', '-')}", "3"])


def test_the_apps_limits_are_counted_in_the_codes_units_and_checked():
    limits = AppConfig(max_minutes=2, max_mb=1.5, max_download_seconds=9, upload_store_mb=20, max_upload_seconds=30,
                       min_upload_rate=4).limits
    assert (limits.max_seconds, limits.max_bytes, limits.download_seconds, limits.upload_store_bytes,
            limits.upload_seconds, limits.min_upload_rate) == (120, 1_500_000, 9, 20_000_000, 30, 4000)
    assert YoutubeAppConfig(max_download_seconds=9).limits.download_seconds == 9
    for flags in (["--live-sessions", "0"], ["--stream-every", "0.01"], ["--stream-every", "60"],
                  ["--port", "70000"], ["--shutdown-timeout", "-1"]):
        with pytest.raises(WhisperGLError, match="must be|cannot be negative"):
            parse_config(AppConfig, "a", flags)


def test_host_and_port_default_to_gradios_variables(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert FileAppConfig().listen_on() == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8080")
    assert FileAppConfig().listen_on() == ("0.0.0.0", 8080)
    assert FileAppConfig(port=7870).listen_on() == ("0.0.0.0", 7870)


def test_env_limits_are_defaults_that_flags_override(monkeypatch):
    monkeypatch.setenv("WHISPER_GL_MAX_MINUTES", "2")
    assert parse_config(AppConfig, "a", []).max_minutes == 2
    assert parse_config(AppConfig, "a", ["--max-minutes", "3"]).max_minutes == 3
    monkeypatch.setenv("WHISPER_GL_MAX_MINUTES", "lots")
    with pytest.raises(WhisperGLError, match="WHISPER_GL_MAX_MINUTES must be a number"):
        parse_config(AppConfig, "a", [])


def test_a_verb_runs_its_handler_and_bad_input_is_one_line(tmp_path):
    with pytest.raises(WhisperGLError, match="invalid choice: 'sing'"):
        invoke(["sing"])
    run = whisper_gl("train", "--preset", "smoke", "--features", str(tmp_path / "none"),
                     "--model", str(tmp_path / "none"), cwd=REPO)
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [
        f"error: features '{tmp_path / 'none'}' not found ({tmp_path / 'none'}): expected a folder written by "
        "`whisper-gl features` or a Hub dataset id"]


@pytest.mark.parametrize("door, path", [("train.py", ("train",)), ("feature_extraction.py", ("features",)),
                                        ("app_file.py", ("app", "file")), ("app_youtube.py", ("app", "youtube")),
                                        ("app_microphone.py", ("app", "microphone"))])
def test_the_doors_are_the_same_verbs(door, path):
    run = subprocess.run([sys.executable, door, "--help"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith(f"usage: {door} ")
    flags = lambda text: sorted(set(re.findall(r"--[\w-]+", text)))  # noqa: E731
    assert flags(run.stdout) == flags(help_text(*path))


@pytest.mark.parametrize("argv, module, extra", [
    (["features", "--dataset", "nowhere"], "datasets", "train"),
    (["train", "--features", "nowhere"], "peft", "train"),
    (["app", "youtube"], "yt_dlp", "youtube"),
])
def test_a_verb_of_an_extra_on_the_core_install_says_what_to_install(monkeypatch, argv, module, extra):
    import importlib.util

    from whisper_gl.paths import install_command

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(WhisperGLError) as caught:
        invoke(argv)
    assert str(caught.value) == (f"whisper-gl {argv[-1] if argv[0] == 'app' else argv[0]} needs the {extra} extra "
                                 f"(missing: {module}): {install_command(extra)}")


def test_evaluate_needs_no_extra():
    assert find_verb("evaluate").needs == () and find_verb("transcribe").needs == ()


def test_the_security_pages_defaults_are_the_flags_defaults(monkeypatch):
    """docs/security.md's table of bounds names flags and their defaults: they are the config's."""
    from whisper_gl.config import ServeConfig

    for variable in ("WHISPER_GL_MAX_MB", "WHISPER_GL_MAX_MINUTES", "WHISPER_GL_UPLOAD_STORE_MB",
                     "WHISPER_GL_MAX_DOWNLOAD_SECONDS"):
        monkeypatch.delenv(variable, raising=False)
    defaults = {f"--{name.replace('_', '-')}": value for name, value in vars(ServeConfig()).items()}
    rows = [line.split(" | ") for line in (REPO / "docs" / "security.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and "`--" in line]
    checked = set()
    for _, bounded_by, default, _ in rows:
        shown = re.findall(r"\d+(?:\.\d+)?", default)
        for flag in re.findall(r"`(--[a-z-]+)`", bounded_by):
            assert f"{defaults[flag]:g}" in shown, (flag, defaults[flag], default)
            checked.add(flag)
    assert {"--max-mb", "--max-upload-seconds", "--min-upload-rate", "--keep-alive-seconds", "--max-minutes",
            "--concurrency", "--queue-size", "--places-per-client", "--upload-store-mb", "--max-download-seconds",
            "--live-sessions", "--shutdown-timeout"} <= checked
