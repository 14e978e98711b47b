"""Where speech datasets come from, read into one shape.

Every loader returns the splits asked for, each a sequence of rows with two fields: `audio`
(undecoded, as datasets' `Audio(decode=False)` holds it: {"path", "bytes"}) and `sentence`
(the transcript). Local folders (Common Voice, audiofolder, a Data Collective download) are
read with the standard library into plain lists, so evaluation needs no `datasets`; a Hub
dataset comes as a `datasets.Dataset` of the same rows. The feature stage turns the splits
into a `datasets.DatasetDict` (`as_dataset_dict`). Decoding is left to the caller
(whisper_gl.audio), so a missing or corrupt file becomes one rejected clip instead of a
failed load.

The kinds of source are registered below (`@register_source`), in the order they are tried
on the `--dataset` string; the flag's help and the errors list them from the registry, so a
new kind is one loader here:
- a local Common Voice release folder (clips/ + train.tsv, dev.tsv, test.tsv ...), or its
  `cv-corpus-<version>/` parent holding locale folders;
- a local audiofolder (metadata.csv/.jsonl with `file_name` and a text column), read as
  datasets' audiofolder builder reads it;
- a Hugging Face Hub dataset id (NAMESPACE/NAME) in parquet form (needs `datasets`, of the
  train extra);
- a Mozilla Data Collective dataset id or slug (how Mozilla ships Common Voice today).

Output splits are built from source splits named in a '+'-separated spec per output split
(default: train, validation and test as the source has them; the seed joined train + validation
and selected on test). Common Voice's dev.tsv is "validation".

`datasets` is imported by the Hub loader and `as_dataset_dict` only: reading this module
(for the registry, or --help) costs nothing.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping, Sequence

from . import WhisperGLError, error_line
from .paths import home, install_command
from .store import HUB_ID, hub_call

if TYPE_CHECKING:
    import datasets

# One clip: {"audio": {"path": str | None, "bytes": bytes | None}, "sentence": str}.
Row = dict[str, Any]
# A split: a list of rows (local sources) or a datasets.Dataset of them (Hub).
Rows = Sequence[Row]
Splits = dict[str, Rows]

TEXT_COLUMNS = ("sentence", "text", "transcription")
AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")
# Split folders of an audiofolder, and the split each holds (datasets' names for them).
AUDIOFOLDER_SPLIT_DIRS = {"train": "train", "test": "test", "validation": "validation", "valid": "validation",
                          "dev": "validation"}
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
    load: Callable[[str, SourceRequest], Splits]
    # Tried after every other kind: it takes any name that is not a local path (a Hub id, a
    # Data Collective slug), so a kind registered later with a stricter test still gets its turn.
    fallback: bool = False


SOURCES: dict[str, DataSource] = {}


def register_source(name: str, summary: str, recognises: Callable[[str], bool], *, fallback: bool = False):
    """Decorator: `load(dataset, request) -> {split: rows}` reads the sources that `recognises`
    (a datasets.DatasetDict is such a mapping too)."""

    def register(load: Callable[[str, SourceRequest], Splits]):
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
                text_column: str | None = None, split_flag: str | None = None) -> Splits:
    """Read `dataset` (folder, Hub id, Mozilla Data Collective id: any registered source) as
    rows of audio + sentence per output split.

    splits: output split -> source splits (default DEFAULT_SPLITS). An output split in `optional`
    that the source lacks is left out with a note; any other missing one is an error, which
    names the flag that chooses it (`split_flag`, default --<output>-split).
    """
    wanted = split_plan(DEFAULT_SPLITS if splits is None else splits)
    wanted = {output: (parts, output in optional, split_flag or f"--{output}-split") for output, parts in wanted.items()}
    request = SourceRequest(wanted, config=config, revision=revision, audio_column=audio_column,
                            text_column=text_column)
    return find_source(dataset).load(dataset, request)


def as_dataset_dict(splits: Mapping[str, Rows]) -> datasets.DatasetDict:
    """The splits as a datasets.DatasetDict with columns `audio` (Audio(decode=False)) and `sentence`."""
    import datasets

    return datasets.DatasetDict({split: _as_dataset(rows) for split, rows in splits.items()})


def _as_dataset(rows: Rows) -> datasets.Dataset:
    import datasets

    if not isinstance(rows, datasets.Dataset):
        audio = [row["audio"] if row["audio"].get("bytes") else row["audio"]["path"] for row in rows]
        rows = datasets.Dataset.from_dict({"audio": audio, "sentence": [row["sentence"] for row in rows]},
                                          features=datasets.Features({"audio": datasets.Audio(decode=False),
                                                                      "sentence": datasets.Value("string")}))
    return rows.cast_column("audio", datasets.Audio(decode=False))


def _clip(path: str | os.PathLike, sentence: str | None) -> Row:
    return {"audio": {"path": str(path), "bytes": None}, "sentence": sentence or ""}


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


def load_common_voice(folder: Path, wanted: Wanted, *, text_column: str | None = None) -> Splits:
    """Read a Common Voice locale folder: `path` in the TSVs is relative to clips/."""
    available = {_cv_split_name(tsv.stem): tsv for tsv in folder.glob("*.tsv")}
    text = text_column or "sentence"

    def read(split: str) -> list[Row]:
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
        return [_clip(clips / row["path"], row[text]) for row in rows]

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
def _read_common_voice(dataset: str, request: SourceRequest) -> Splits:
    release = find_common_voice_release(Path(dataset).expanduser(), locale=request.config)
    return load_common_voice(release, request.wanted, text_column=request.text_column)


# --- audiofolder ---------------------------------------------------------------------------

def is_audiofolder(folder: Path) -> bool:
    """datasets' audiofolder layout: metadata at the top or in split subfolders (train/, test/)."""
    return bool(_audiofolder_metadata(folder))


def _audiofolder_metadata(folder: Path) -> list[tuple[Path, str | None]]:
    """(metadata file, the split it holds) in `folder`: a split folder's file holds that split; a
    file at the top holds train, or each row the split of the folder its file lies in."""
    found = [(folder / name, None) for name in AUDIOFOLDER_METADATA if (folder / name).is_file()]
    return found + [(folder / sub / name, split) for sub, split in AUDIOFOLDER_SPLIT_DIRS.items()
                    for name in AUDIOFOLDER_METADATA if (folder / sub / name).is_file()]


def load_audiofolder(folder: Path, wanted: Wanted, *, text_column: str | None = None) -> Splits:
    """Read an audiofolder (split folders, csv or jsonl metadata with `file_name` and a text
    column) as datasets' audiofolder builder does, with the standard library."""
    splits: dict[str, list[Row]] = {}
    for metadata, split in _audiofolder_metadata(folder):
        table, columns = _read_metadata(metadata)
        where = f"'{metadata}'"
        if "file_name" not in columns:
            raise WhisperGLError(f"could not read the audiofolder '{folder}': {where} has no file_name column "
                                 f"(columns: {', '.join(columns) or 'none'}); expected metadata.csv with a "
                                 "file_name column and a text column")
        text = _text_column(columns, text_column, where)
        for row in table:
            name = str(row["file_name"] or "")
            row_split = split or AUDIOFOLDER_SPLIT_DIRS.get(Path(name).parts[0] if len(Path(name).parts) > 1 else "",
                                                            "train")
            splits.setdefault(row_split, []).append(_clip(metadata.parent.resolve() / name, row[text]))
    return _assemble(wanted, set(splits), splits.__getitem__, source=str(folder))


def _read_metadata(path: Path) -> tuple[list[dict], list[str]]:
    """The rows and columns of an audiofolder's metadata.csv or metadata.jsonl."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            if path.suffix == ".csv":
                reader = csv.DictReader(handle)
                return list(reader), list(reader.fieldnames or [])
            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as error:
        raise WhisperGLError(f"could not read the audiofolder metadata '{path}' ({error_line(error)})") from None
    if not all(isinstance(row, dict) for row in rows):
        raise WhisperGLError(f"could not read the audiofolder metadata '{path}': each line must be a JSON object")
    return rows, list(dict.fromkeys(key for row in rows for key in row))


@register_source("audiofolder", "an audiofolder (metadata.csv with file_name and a text column)",
                 lambda dataset: _local_folder(dataset) is not None and is_audiofolder(_local_folder(dataset)))
def _read_audiofolder(dataset: str, request: SourceRequest) -> Splits:
    return load_audiofolder(Path(dataset).expanduser(), request.wanted, text_column=request.text_column)


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
                  hint=f"; offline, pass a local Common Voice folder, e.g. --dataset {home().sample_corpus} "
                       "(made by `whisper-gl corpus`)"):
        HfApi().dataset_info(repo_id, revision=revision, timeout=10)


def load_hub(repo_id: str, wanted: Wanted, *, config: str | None = None,
             revision: str | None = None, audio_column: str = "audio",
             text_column: str | None = None) -> Splits:
    """A parquet dataset on the Hub, e.g. google/fleurs gl_es at revision refs/convert/parquet."""
    try:
        import datasets
    except ImportError:
        raise WhisperGLError(f"reading the Hub dataset '{repo_id}' needs `datasets`, of the train extra: "
                             f"{install_command('train')}") from None

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
def _read_hub(dataset: str, request: SourceRequest) -> Splits:
    return load_hub(dataset, request.wanted, config=request.config, revision=request.revision,
                    audio_column=request.audio_column, text_column=request.text_column)


# --- Mozilla Data Collective ---------------------------------------------------------------

def load_data_collective(dataset_id: str, wanted: Wanted, *, config: str | None = None,
                         text_column: str | None = None) -> Splits:
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
def _read_data_collective(dataset: str, request: SourceRequest) -> Splits:
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


def _assemble(wanted: Wanted, available: set[str], read: Callable[[str], Rows], *, source: str) -> Splits:
    """Join the wanted source splits into the output splits, skipping (and saying) those absent."""
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
        result[output] = _joined([read(part) for part in present])
    return result


def _joined(pieces: list[Rows]) -> Rows:
    """One split from several: lists stay lists; Hub datasets are concatenated by datasets."""
    if len(pieces) == 1:
        return pieces[0]
    if all(isinstance(piece, list) for piece in pieces):
        return [row for piece in pieces for row in piece]
    import datasets

    return datasets.concatenate_datasets([_as_dataset(piece) for piece in pieces])


def _text_column(columns: list[str], text_column: str | None, where: str) -> str:
    """The transcript column: the one named, else the first of TEXT_COLUMNS present."""
    text = text_column or next((name for name in TEXT_COLUMNS if name in columns), None)
    if text not in columns:
        expected = f"'{text_column}'" if text_column else f"(looked for {', '.join(TEXT_COLUMNS)})"
        raise WhisperGLError(f"{where} has no text column {expected} (columns: {', '.join(columns)}); "
                             "name it with --text-column")
    return text


def _standardize(dataset: datasets.Dataset, audio_column: str, text_column: str | None, *,
                 where: str) -> datasets.Dataset:
    """Keep only the audio and transcript columns, named `audio` and `sentence`."""
    import datasets

    columns = dataset.column_names
    if audio_column not in columns:
        raise WhisperGLError(f"{where} has no audio column '{audio_column}' (columns: {', '.join(columns)}); "
                             "name it with --audio-column")
    text = _text_column(columns, text_column, where)
    dataset = dataset.select_columns([audio_column, text])
    if audio_column != "audio":
        dataset = dataset.rename_column(audio_column, "audio")
    if text != "sentence":
        dataset = dataset.rename_column(text, "sentence")
    return dataset.cast_column("audio", datasets.Audio(decode=False))

