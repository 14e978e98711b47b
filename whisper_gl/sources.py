"""Where speech datasets come from, read into one shape.

Every loader returns a `datasets.DatasetDict` with the splits asked for and two columns:
`audio` (an undecoded `Audio(decode=False)` dict: {"path", "bytes"}) and `sentence` (the
transcript). Decoding is left to the feature stage (whisper_gl.audio), so a missing or corrupt
file becomes one rejected clip instead of a failed load.

The kinds of source are registered below (`@register_source`), in the order they are tried
on the `--dataset` string; the flag's help and the errors list them from the registry, so a
new kind is one loader here:
- a local Common Voice release folder (clips/ + train.tsv, dev.tsv, test.tsv ...), or its
  `cv-corpus-<version>/` parent holding locale folders;
- a local audiofolder (metadata.csv/.jsonl with `file_name` and a text column);
- a Hugging Face Hub dataset id (NAMESPACE/NAME) in parquet form;
- a Mozilla Data Collective dataset id or slug (how Mozilla ships Common Voice today).

Output splits are built from source splits named in a '+'-separated spec per output split
(default: train, validation and test as the source has them; the seed joined train + validation
and selected on test). Common Voice's dev.tsv is "validation".

`datasets` is imported by the loaders only: reading this module (for the registry, or
--help) costs nothing.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Mapping

from . import WhisperGLError, error_line
from .store import HUB_ID, hub_call

if TYPE_CHECKING:
    import datasets

TEXT_COLUMNS = ("sentence", "text", "transcription")
AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")
AUDIOFOLDER_SPLIT_DIRS = ("train", "test", "validation", "valid", "dev")
# Common Voice names its validation split after the file dev.tsv.
_CV_FILE_OF_SPLIT = {"validation": "dev"}

# Output split -> the source splits joined into it ('+'-separated); "none" leaves it out.
DEFAULT_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
NO_SPLIT = "none"
Wanted = dict[str, tuple[list[str], bool, str]]  # output split -> (source splits, optional, flag)


@dataclass(frozen=True)
class SourceRequest:
    """What a loader is asked for: the output splits, and how to read the source's columns."""

    wanted: Wanted
    config: str | None = None  # Hub configuration, or the locale folder of a cv-corpus-<version>/
    revision: str | None = None
    audio_column: str = "audio"
    text_column: str | None = None


@dataclass(frozen=True)
class DataSource:
    """A kind of dataset `--dataset` can name."""

    name: str
    summary: str  # how a user names one: for --help and errors
    recognises: Callable[[str], bool]  # whether a --dataset string is one of these
    load: Callable[[str, SourceRequest], "datasets.DatasetDict"]
    # Tried after every other kind: it takes any name that is not a local path (a Hub id, a
    # Data Collective slug), so a kind registered later with a stricter test still gets its turn.
    fallback: bool = False


SOURCES: dict[str, DataSource] = {}


def register_source(name: str, summary: str, recognises: Callable[[str], bool], *, fallback: bool = False):
    """Decorator: `load(dataset, request) -> DatasetDict` reads the sources that `recognises`."""

    def register(load: Callable[[str, SourceRequest], "datasets.DatasetDict"]):
        SOURCES[name] = DataSource(name, summary, recognises, load, fallback)
        return load

    return register


def described_sources() -> str:
    """The kinds of dataset there are, in one sentence (for --help and errors)."""
    return "; ".join(source.summary for source in SOURCES.values())


def expected_layouts() -> str:
    return f"expected {described_sources()}"


def load_source(dataset: str, splits: Mapping[str, str] | None = None, *, optional: Collection[str] = ("validation",),
                config: str | None = None, revision: str | None = None, audio_column: str = "audio",
                text_column: str | None = None, split_flag: str | None = None) -> datasets.DatasetDict:
    """Read `dataset` (folder, Hub id, Mozilla Data Collective id: any registered source) as
    audio + sentence per output split.

    splits: output split -> source splits (default DEFAULT_SPLITS). An output split in `optional`
    that the source lacks is left out with a note; any other missing one is an error, which
    names the flag that chooses it (`split_flag`, default --<output>-split).
    """
    wanted = split_plan(DEFAULT_SPLITS if splits is None else splits)
    wanted = {output: (parts, output in optional, split_flag or f"--{output}-split") for output, parts in wanted.items()}
    request = SourceRequest(wanted, config=config, revision=revision, audio_column=audio_column,
                            text_column=text_column)
    return find_source(dataset).load(dataset, request)


def find_source(dataset: str) -> DataSource:
    """The first registered kind that recognises `dataset` (fallbacks last), or a one-line error
    saying what was expected."""
    for source in sorted(SOURCES.values(), key=lambda source: source.fallback):
        if source.recognises(dataset):
            return source
    path = Path(dataset).expanduser()
    if path.is_dir():
        raise WhisperGLError(f"'{dataset}' is not a dataset folder I know: {expected_layouts()}")
    if path.exists():
        raise WhisperGLError(f"'{dataset}' is a file, not a dataset folder: {expected_layouts()}")
    raise WhisperGLError(f"dataset folder '{dataset}' not found: {expected_layouts()}")


def _local_folder(dataset: str) -> Path | None:
    path = Path(dataset).expanduser()
    return path if path.is_dir() else None


# --- Common Voice release folders ---------------------------------------------------------

def find_common_voice_release(folder: Path, locale: str | None = None) -> Path | None:
    """The locale folder (clips/ + TSVs) at `folder`, or inside a cv-corpus-<version>/ parent."""
    if _is_common_voice_release(folder):
        return folder
    locales = sorted(child for child in folder.iterdir() if _is_common_voice_release(child))
    if locale is not None:
        chosen = [child for child in locales if child.name == locale]
        if not chosen:
            found = ", ".join(child.name for child in locales) or "none"
            raise WhisperGLError(f"'{folder}' has no Common Voice locale folder '{locale}' (found: {found})")
        return chosen[0]
    if len(locales) > 1:
        names = ", ".join(child.name for child in locales)
        raise WhisperGLError(f"'{folder}' holds several Common Voice locales ({names}): pick one with --config")
    return locales[0] if locales else None


def _is_common_voice_release(folder: Path) -> bool:
    return folder.is_dir() and (folder / "clips").is_dir() and any(folder.glob("*.tsv"))


def load_common_voice(folder: Path, wanted: Wanted, *,
                      text_column: str | None = None) -> datasets.DatasetDict:
    """Read a Common Voice locale folder: `path` in the TSVs is relative to clips/."""
    import datasets

    available = {_cv_split_name(tsv.stem): tsv for tsv in folder.glob("*.tsv")}
    text = text_column or "sentence"

    def read(split: str) -> datasets.Dataset:
        tsv = available[split]
        # Common Voice quotes nothing: sentences may contain quote characters.
        with open(tsv, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = [column for column in ("path", text) if column not in (reader.fieldnames or [])]
            if missing:
                raise WhisperGLError(
                    f"'{tsv}' lacks the column(s) {', '.join(missing)}: a Common Voice TSV has a header with "
                    f"client_id, path, sentence, ... (found: {', '.join(reader.fieldnames or []) or 'nothing'})"
                )
            rows = list(reader)
        clips = folder.resolve() / "clips"
        return datasets.Dataset.from_dict({
            "audio": [str(clips / row["path"]) for row in rows],
            "sentence": [row[text] or "" for row in rows],
        })

    return _assemble(wanted, set(available), read, source=str(folder))


def _cv_split_name(file_stem: str) -> str:
    reverse = {stem: split for split, stem in _CV_FILE_OF_SPLIT.items()}
    return reverse.get(file_stem, file_stem)


def _holds_common_voice(dataset: str) -> bool:
    folder = _local_folder(dataset)
    return folder is not None and (_is_common_voice_release(folder)
                                   or any(_is_common_voice_release(child) for child in folder.iterdir()))


@register_source("common-voice", "a Common Voice release folder (clips/ + train.tsv, dev.tsv, test.tsv) or the "
                 "cv-corpus-<version>/ folder holding it", _holds_common_voice)
def _read_common_voice(dataset: str, request: SourceRequest) -> datasets.DatasetDict:
    release = find_common_voice_release(Path(dataset).expanduser(), locale=request.config)
    return load_common_voice(release, request.wanted, text_column=request.text_column)


# --- audiofolder ---------------------------------------------------------------------------

def is_audiofolder(folder: Path) -> bool:
    """datasets' audiofolder layout: metadata at the top or in split subfolders (train/, test/)."""
    candidates = [folder, *(folder / split for split in AUDIOFOLDER_SPLIT_DIRS)]
    return any((candidate / name).is_file() for candidate in candidates for name in AUDIOFOLDER_METADATA)


def load_audiofolder(folder: Path, wanted: Wanted, *, audio_column: str = "audio",
                     text_column: str | None = None) -> datasets.DatasetDict:
    """Read an audiofolder with datasets' own builder (split folders, csv or jsonl metadata)."""
    import datasets

    try:
        loaded = datasets.load_dataset("audiofolder", data_dir=str(folder))
    except Exception as error:  # noqa: BLE001 - the builder's errors become one clear line
        raise WhisperGLError(
            f"could not read the audiofolder '{folder}' ({error_line(error)}): expected metadata.csv "
            "with a file_name column and a text column"
        ) from None
    return _assemble(wanted, set(loaded), lambda split: _standardize(
        loaded[split], audio_column, text_column, where=f"'{folder}' ({split})"), source=str(folder))


@register_source("audiofolder", "an audiofolder (metadata.csv with file_name and a text column)",
                 lambda dataset: _local_folder(dataset) is not None and is_audiofolder(_local_folder(dataset)))
def _read_audiofolder(dataset: str, request: SourceRequest) -> datasets.DatasetDict:
    return load_audiofolder(Path(dataset).expanduser(), request.wanted, audio_column=request.audio_column,
                            text_column=request.text_column)


# --- Hugging Face Hub ----------------------------------------------------------------------

def check_hub_dataset(repo_id: str, revision: str | None = None) -> None:
    """Fail in one line within seconds when the Hub (or the repo) cannot be reached.

    datasets retries an unreachable Hub for about 25 s before failing; one metadata call
    with a short timeout answers the same question at once. With HF_HUB_OFFLINE set the
    check is skipped so datasets can use its local cache.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE:
        return
    with hub_call(f"'{repo_id}' is not a local folder, and reaching the Hugging Face Hub dataset",
                  hint="; offline, pass a local Common Voice folder, e.g. --dataset Resources/cv-corpus-sample/gl"):
        HfApi().dataset_info(repo_id, revision=revision, timeout=10)


def load_hub(repo_id: str, wanted: Wanted, *, config: str | None = None,
             revision: str | None = None, audio_column: str = "audio",
             text_column: str | None = None) -> datasets.DatasetDict:
    """A parquet dataset on the Hub, e.g. google/fleurs gl_es at revision refs/convert/parquet."""
    import datasets

    check_hub_dataset(repo_id, revision)
    with hub_call(f"listing the splits of '{repo_id}'", hint="; a dataset with several configurations needs --config"):
        names = set(datasets.get_dataset_split_names(repo_id, config, revision=revision))

    def read(split: str) -> datasets.Dataset:
        with hub_call(f"loading '{repo_id}' split {split}"):
            loaded = datasets.load_dataset(repo_id, config, split=split, revision=revision)
        return _standardize(loaded, audio_column, text_column, where=f"'{repo_id}' ({split})")

    return _assemble(wanted, names, read, source=repo_id)


@register_source("hub", "a Hugging Face Hub dataset id NAMESPACE/NAME (parquet; --config, --revision)",
                 lambda dataset: not Path(dataset).expanduser().exists() and bool(HUB_ID.match(dataset)), fallback=True)
def _read_hub(dataset: str, request: SourceRequest) -> datasets.DatasetDict:
    return load_hub(dataset, request.wanted, config=request.config, revision=request.revision,
                    audio_column=request.audio_column, text_column=request.text_column)


# --- Mozilla Data Collective ---------------------------------------------------------------

def load_data_collective(dataset_id: str, wanted: Wanted, *, config: str | None = None,
                         text_column: str | None = None) -> datasets.DatasetDict:
    """Download (once) and read a Common Voice release from the Mozilla Data Collective.

    Needs `pip install datacollective` and MDC_API_KEY (after accepting the dataset's terms
    on the site); MDC_DOWNLOAD_PATH picks the download folder.
    """
    if not os.environ.get("MDC_API_KEY"):
        raise WhisperGLError(
            f"'{dataset_id}' is not a local folder or a Hub id (NAMESPACE/NAME); to download it from the "
            "Mozilla Data Collective set MDC_API_KEY (an API key from the site, after accepting the "
            "dataset's terms)"
        )
    try:
        from datacollective import download_dataset
    except ImportError:
        raise WhisperGLError("the Mozilla Data Collective needs its client: pip install datacollective") from None
    try:
        extracted = Path(download_dataset(dataset_id, extract=True))
    except Exception as error:  # noqa: BLE001 - auth, 404, network: one line
        raise WhisperGLError(f"Mozilla Data Collective download of '{dataset_id}' failed "
                             f"({error_line(error)})") from None
    release = _find_release_below(extracted, config)
    if release is None:
        raise WhisperGLError(f"the download '{extracted}' holds no Common Voice release folder: {expected_layouts()}")
    return load_common_voice(release, wanted, text_column=text_column)


@register_source("data-collective", "a Mozilla Data Collective dataset id or slug (needs MDC_API_KEY and "
                 "`pip install datacollective`)",
                 lambda dataset: not Path(dataset).expanduser().exists() and "/" not in dataset and os.sep not in dataset,
                 fallback=True)
def _read_data_collective(dataset: str, request: SourceRequest) -> datasets.DatasetDict:
    return load_data_collective(dataset.removeprefix("mdc:"), request.wanted, config=request.config,
                                text_column=request.text_column)


def _find_release_below(root: Path, locale: str | None) -> Path | None:
    """The archive unpacks to cv-corpus-<version>/<locale>/: look two levels down (never into clips/)."""
    level, candidates = [root], [root]
    for _ in range(2):
        level = [child for folder in level for child in sorted(folder.iterdir())
                 if child.is_dir() and child.name != "clips"]
        candidates += level
    for folder in candidates:
        if _is_common_voice_release(folder) and (locale is None or folder.name == locale):
            return folder
    return None


# --- shared --------------------------------------------------------------------------------

def split_plan(splits: Mapping[str, str]) -> dict[str, list[str]]:
    """Output split -> source splits, from '+'-separated specs; a source split feeds one output only."""
    plan, used = {}, {}
    for output, spec in splits.items():
        if spec.strip().lower() == NO_SPLIT:
            continue
        parts = [part.strip() for part in spec.split("+") if part.strip()]
        if not parts:
            raise WhisperGLError(f"empty split spec '{spec}' for {output}: expected names like train+validation")
        for part in parts:
            if part in used:
                raise WhisperGLError(f"the source split '{part}' cannot go into both {used[part]} and {output}")
            used[part] = output
        plan[output] = parts
    return plan


def _assemble(wanted: Wanted, available: set[str], read, *,
              source: str) -> datasets.DatasetDict:
    """Join the wanted source splits into the output splits, skipping (and saying) those absent."""
    import datasets

    result = {}
    for output, (parts, optional, flag) in wanted.items():
        present = [part for part in parts if part in available]
        if not present and optional:
            print(f"note: '{source}' has no {'+'.join(parts)} split for {output}")
            continue
        if not present:
            found = ", ".join(sorted(available)) or "none"
            raise WhisperGLError(f"'{source}' has none of the splits {'+'.join(parts)} for {output} "
                                 f"(found: {found}); choose them with {flag}")
        for part in parts:
            if part not in available:
                print(f"note: '{source}' has no '{part}' split; {output} uses {'+'.join(present)}")
        pieces = [read(part) for part in present]
        result[output] = pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)
    return datasets.DatasetDict(result).cast_column("audio", datasets.Audio(decode=False))


def _standardize(dataset: datasets.Dataset, audio_column: str, text_column: str | None, *,
                 where: str) -> datasets.Dataset:
    """Keep only the audio and transcript columns, named `audio` and `sentence`."""
    import datasets

    columns = dataset.column_names
    if audio_column not in columns:
        raise WhisperGLError(f"{where} has no audio column '{audio_column}' (columns: {', '.join(columns)}); "
                             "name it with --audio-column")
    text = text_column or next((name for name in TEXT_COLUMNS if name in columns), None)
    if text not in columns:
        expected = f"'{text_column}'" if text_column else f"(looked for {', '.join(TEXT_COLUMNS)})"
        raise WhisperGLError(f"{where} has no text column {expected} (columns: {', '.join(columns)}); "
                             "name it with --text-column")
    dataset = dataset.select_columns([audio_column, text])
    if audio_column != "audio":
        dataset = dataset.rename_column(audio_column, "audio")
    if text != "sentence":
        dataset = dataset.rename_column(text, "sentence")
    return dataset.cast_column("audio", datasets.Audio(decode=False))

