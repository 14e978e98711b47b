"""Deploy the apps as Hugging Face Spaces: stage a runnable Space folder, then upload it.

    whisper-gl deploy --app file --space USER/whisper-gl-file --model USER/whisper-small-gl
    whisper-gl deploy --all --space-prefix USER/whisper-gl --model USER/whisper-small-gl
    whisper-gl deploy --app youtube --space USER/NAME --model DIR --dry-run /tmp/space

A staged Space is what the Hub builds and what `python app.py` runs locally:

    app.py            the app's door (app_<kind>.py), defaulting WHISPER_GL_MODEL to the model
    whisper_gl/       only the package modules the app imports (found by reading the imports)
    requirements.txt  inference packages only, with this repository's version ranges
    packages.txt      ffmpeg (apt), which decodes every upload and download
    README.md         Spaces front matter (sdk, sdk_version, python_version, models, ...)

Weights never go into the Space: a local model folder is pushed to a Hub model repo first,
and the Space downloads it by id (WHISPER_GL_MODEL variable, preloaded at build time).
"""

from __future__ import annotations

import ast
import contextlib
import http.cookiejar
import io
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator

from . import WhisperGLError, error_line
from .backends import ctranslate2_export
from .config import APP_KINDS as APPS
from .config import MODEL_ENV as MODEL_VARIABLE
from .config import COOKIES_ENV as COOKIES_SECRET  # a cookies.txt path *or* its content: a secret holds the content
from .config import DeployConfig, check_choice
from .paths import install_command
from .store import HUB_ID, atomic_dir, hub_call, hub_token, is_hub_id, push_folder, resolve_model

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# transformers 5 needs Python >= 3.10 and Spaces default to 3.10; 3.11 is what the tests run.
SPACE_PYTHON = "3.11"
# CPU wheels of torch are ~10x smaller than the CUDA ones PyPI serves by default.
TORCH_CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
CPU_HARDWARE = {"cpu-basic", "cpu-upgrade"}

# Distributions the apps need at inference, taken from pyproject.toml's dependencies with their
# ranges. The training extras (datasets, accelerate, peft, matplotlib, tensorboard) stay out:
# tests/test_deploy.py checks that every import of the staged modules is covered by these.
RUNTIME_PACKAGES = (
    "torch",  # the transformers backend (GPU, or a model without a CTranslate2 export)
    "transformers",
    "huggingface_hub",  # model download by id
    "ctranslate2",
    "faster-whisper",  # the CPU backend, on the model's ctranslate2/ export
    "torchcodec",  # in-process decoding with ffmpeg's libraries (audio.py falls back to the ffmpeg command)
    "gradio",  # pinned to the front matter's sdk_version below
    "soundfile",  # the microphone's live chunks (apps.py)
    "soxr",  # resampling them to 16 kHz as they stream (streaming.py)
)
YOUTUBE_PACKAGES = (  # pyproject.toml's youtube extra
    "yt-dlp",  # with [default]: yt-dlp-ejs, YouTube's signature challenge solver
    "deno",  # the JavaScript runtime yt-dlp-ejs needs, as a PyPI binary
)


@dataclass(frozen=True)
class SpaceLook:
    title: str
    emoji: str
    color_from: str
    color_to: str
    short_description: str  # the Hub caps it at 60 characters


LOOKS = {
    "microphone": SpaceLook("whisper-gl microphone", "🎙️", "indigo", "blue",
                            "Live Galician captions as you speak: fine-tuned Whisper"),
    "file": SpaceLook("whisper-gl file", "📁", "green", "blue",
                      "Galician audio file to text and subtitles: Whisper"),
    "youtube": SpaceLook("whisper-gl YouTube", "📺", "red", "yellow",
                         "Transcribe a Galician YouTube video: Whisper"),
}


@dataclass(frozen=True)
class Target:
    app: str
    space: str  # USER/NAME


@dataclass(frozen=True)
class YouTubeCookies:
    content: str = field(repr=False)  # a secret: never shown, even in a traceback's repr
    count: int


# ---------------------------------------------------------------- checks (nothing leaves the machine)

def plan(config: DeployConfig) -> list[Target]:
    """Which Spaces to deploy, checked before anything is staged or uploaded."""
    if config.all == bool(config.app):
        raise WhisperGLError("give either --app microphone|file|youtube or --all")
    if config.all:
        if config.space or not config.space_prefix:
            raise WhisperGLError("--all names the Spaces from --space-prefix USER/PREFIX (not --space)")
        _check_space_id(config.space_prefix, "--space-prefix")
        return [Target(app, f"{config.space_prefix}-{app}") for app in APPS]
    check_choice("app", config.app, APPS)
    if not config.space or config.space_prefix:
        raise WhisperGLError("--app deploys one Space named by --space USER/NAME (--space-prefix goes with --all)")
    _check_space_id(config.space, "--space")
    return [Target(config.app, config.space)]


def _check_space_id(space: str, flag: str) -> None:
    if "/" not in space:
        raise WhisperGLError(f"{flag} '{space}' has no namespace: write it as USER/NAME (or ORG/NAME)")
    if not HUB_ID.match(space) or len(space.split("/", 1)[1]) > 96:
        raise WhisperGLError(f"{flag} '{space}' is not a valid Hub id (USER/NAME: letters, digits, '-', '_', '.')")


def check_checkout(apps: list[str]) -> None:
    """A Space is staged from the repository: its pyproject.toml (the requirements) and the doors."""
    needed = [REPO_ROOT / "pyproject.toml", *(REPO_ROOT / f"app_{app}.py" for app in apps)]
    missing = [path.name for path in needed if not path.is_file()]
    if missing:
        raise WhisperGLError(f"whisper-gl deploy stages the apps from a checkout of the repository, and "
                             f"{REPO_ROOT} lacks {', '.join(missing)}: run it from a clone")


def check_hardware(hardware: str) -> str:
    from huggingface_hub import SpaceHardware

    known = [flavor.value for flavor in SpaceHardware]
    if hardware not in known:
        raise WhisperGLError(f"unknown --hardware '{hardware}': choose one of {', '.join(known)}")
    if hardware.startswith("zero-"):
        # ZeroGPU only attaches a GPU inside @spaces.GPU functions, which the engine has not.
        raise WhisperGLError("ZeroGPU hardware is not supported: pick cpu-basic, cpu-upgrade or a GPU flavor")
    return hardware


def local_model(model: str) -> Path | None:
    """The model folder when `model` is a local path (checked to hold a model), else None."""
    path = Path(model).expanduser()
    if not path.exists():
        if not is_hub_id(model):
            raise WhisperGLError(f"--model '{model}' is neither a local model folder nor a Hub id (USER/NAME)")
        return None
    resolve_model(str(path))  # refuses a folder without a model
    if ctranslate2_export(path) is None:
        print(f"note: {path} has no ctranslate2/ export; on a CPU Space the engine falls back to "
              f"the slower transformers backend. Run `whisper-gl export --model {path}` first.")
    return path.resolve()


def read_cookies(path: str) -> YouTubeCookies:
    """The youtube.com cookies of a Netscape cookies.txt, re-serialised.

    Only YouTube's cookies are kept: a browser export often holds every site's session
    (mail, bank...), which must not end up in a Space secret. Nothing is ever printed.
    """
    try:
        from yt_dlp.cookies import YoutubeDLCookieJar
    except ImportError:
        raise WhisperGLError(f"--cookies-file is read with yt-dlp, of the youtube extra: "
                             f"{install_command('youtube')}") from None

    jar = YoutubeDLCookieJar()
    # yt-dlp prints a skipped line *with its value* on stderr: swallow those warnings.
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            jar.load(str(Path(path).expanduser()))
        except (OSError, http.cookiejar.LoadError) as error:
            raise WhisperGLError(f"--cookies-file '{path}' cannot be read as a Netscape cookies.txt: "
                                 f"{error_line(error)}") from None
    youtube = YoutubeDLCookieJar()
    for cookie in jar:
        if cookie.domain.lstrip(".") == "youtube.com" or cookie.domain.endswith(".youtube.com"):
            youtube.set_cookie(cookie)
    if not len(youtube):
        raise WhisperGLError(f"--cookies-file '{path}' holds no youtube.com cookies: export them from a "
                             "browser logged in to YouTube")
    content = io.StringIO()
    youtube.save(content)
    return YouTubeCookies(content.getvalue(), len(youtube))


# ---------------------------------------------------------------- staging

def runtime_modules(entries: tuple[str, ...] = ("cli", "apps")) -> list[str]:
    """The package modules that `entries` import, transitively, including imports inside functions.

    An app's door imports whisper_gl.cli, which runs the app verb's handler in whisper_gl.apps.
    """
    seen: set[str] = set()
    todo = ["__init__", *entries]
    entry = " and ".join(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        source = PACKAGE_DIR / f"{name}.py"
        if not source.is_file():
            raise WhisperGLError(f"whisper_gl/{name}.py is missing: the {entry} module cannot be staged")
        seen.add(name)
        todo.extend(_package_imports(ast.parse(source.read_text(encoding="utf-8"))))
    return sorted(seen)


def _package_imports(tree: ast.AST) -> Iterator[str]:
    package = PACKAGE_DIR.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
            yield from (parts[1] for parts in names if parts[0] == package and len(parts) > 1)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.split(".")[0] == package:
                module = module.partition(".")[2]
            elif node.level != 1:
                continue  # a third-party or standard-library import
            if module:  # from .audio import load_audio
                yield module.split(".")[0]
            else:  # from . import audio (or a name defined in __init__)
                yield from (alias.name for alias in node.names
                            if (PACKAGE_DIR / f"{alias.name}.py").is_file())


def project_dependencies(extras: tuple[str, ...] = ("youtube",)) -> dict[str, str]:
    """pyproject.toml's dependencies (inference) and those of its `extras`, by canonical distribution name."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = [*project["dependencies"], *(line for extra in extras for line in project["optional-dependencies"][extra])]
    return {canonicalize_name(Requirement(line).name): line for line in lines}


def space_requirements(app: str, hardware: str) -> list[str]:
    """requirements.txt lines for the Space: the inference packages with this repo's ranges (and the
    youtube extra's for the YouTube app)."""
    from packaging.utils import canonicalize_name

    wanted = RUNTIME_PACKAGES + (YOUTUBE_PACKAGES if app == "youtube" else ())
    ranges = project_dependencies()
    # Gradio must be exactly the SDK version the front matter announces.
    ranges["gradio"] = f"gradio=={metadata.version('gradio')}"
    missing = [name for name in wanted if canonicalize_name(name) not in ranges]
    if missing:
        raise WhisperGLError(f"pyproject.toml lacks {', '.join(missing)}: cannot write the Space's requirements")
    lines = [ranges[canonicalize_name(name)] for name in wanted]
    return ([TORCH_CPU_INDEX] if hardware in CPU_HARDWARE else []) + lines


def render_app(app: str, model: str) -> str:
    """The Space's entry: the app's door (app_<app>.py), with the model defaulting to `model`."""
    door = (REPO_ROOT / f"app_{app}.py").read_text(encoding="utf-8")
    docstring_end = ast.parse(door).body[0].end_lineno  # the door opens with its docstring
    lines = door.splitlines()
    default = [
        "",
        f"# {STAGED_MARK}: the model comes from the {MODEL_VARIABLE} variable set on the Space;",
        "# this default keeps the folder runnable as it is.",
        "import os",
        "",
        f"os.environ.setdefault({MODEL_VARIABLE!r}, {model!r})",
    ]
    return "\n".join(lines[:docstring_end] + default + lines[docstring_end:]) + "\n"


def example_files(app: str) -> list[Path]:
    """The bundled clips the app offers as examples (generated at setup; may be absent)."""
    from .apps import KINDS  # gradio: imported only when staging

    return [Path(example) for example in KINDS[app].examples()]


def render_readme(app: str, space: str, model: str, hardware: str) -> str:
    from huggingface_hub import SpaceCard, SpaceCardData

    look = LOOKS[app]
    on_hub = is_hub_id(model)
    data = SpaceCardData(
        title=look.title, emoji=look.emoji, colorFrom=look.color_from, colorTo=look.color_to,
        sdk="gradio", sdk_version=metadata.version("gradio"), python_version=SPACE_PYTHON,
        app_file="app.py", short_description=look.short_description, suggested_hardware=hardware,
        models=[model] if on_hub else None,
        # Download the weights while the Space builds, not on the first request.
        preload_from_hub=[model] if on_hub else None,
        tags=["whisper", "automatic-speech-recognition", "galician"],
    )
    model_line = f"[{model}](https://huggingface.co/{model})" if on_hub else f"`{model}` (local folder)"
    body = [
        f"# {look.title}", "",
        f"{look.short_description}. Model: {model_line}, set by the `{MODEL_VARIABLE}` variable.", "",
        "Deployed from the whisper-gl repository with:", "",
        f"    whisper-gl deploy --app {app} --space {space} --model {model}", "",
        "`whisper_gl/` holds only the package modules this app imports; `requirements.txt` only",
        "the inference packages; `packages.txt` installs ffmpeg.",
    ]
    if app == "youtube":
        body += ["", f"YouTube blocks datacenter addresses: the `{COOKIES_SECRET}` secret holds the",
                 "youtube.com cookies (Netscape cookies.txt) of a logged-in browser "
                 "(`--cookies-file` sets it)."]
    card = SpaceCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")
    return str(card)


STAGED_MARK = "staged by `whisper-gl deploy`"  # in every staged app.py


def stage_space(app: str, space: str, model: str, folder: Path, hardware: str = "cpu-basic") -> Path:
    """Write the complete Space folder for `app` at `folder` (atomically); return it.

    An existing `folder` is replaced only when it is empty or an earlier staged Space:
    `--dry-run .` must never wipe a working directory.
    """
    def staged_before(path: Path) -> bool:
        return not path.exists() or not any(path.iterdir()) or STAGED_MARK in _read(path / "app.py")

    if not staged_before(folder):
        raise WhisperGLError(f"{folder} exists and is not a staged Space: give a new or empty folder")
    modules = runtime_modules()
    with atomic_dir(folder, replaceable=staged_before) as tmp:
        package = tmp / PACKAGE_DIR.name
        package.mkdir()
        for name in modules:
            shutil.copy2(PACKAGE_DIR / f"{name}.py", package / f"{name}.py")
        (tmp / "app.py").write_text(render_app(app, model), encoding="utf-8")
        for example in example_files(app):  # the app finds them in Resources/ next to the package
            # Same place relative to the package (not resolved: Resources/ may hold symlinks).
            copy = tmp / example.absolute().relative_to(REPO_ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(example, copy)
        (tmp / "requirements.txt").write_text("\n".join(space_requirements(app, hardware)) + "\n", encoding="utf-8")
        (tmp / "packages.txt").write_text("ffmpeg\n", encoding="utf-8")
        (tmp / "README.md").write_text(render_readme(app, space, model, hardware), encoding="utf-8")
    return folder


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


# ---------------------------------------------------------------- upload

def upload_space(api, target: Target, folder: Path, model: str, config: DeployConfig,
                 cookies: YouTubeCookies | None) -> str:
    """Create (or update) the Space, set its variable/secret, upload the folder; return its URL."""
    with hub_call(f"creating the Space {target.space}"):
        url = api.create_repo(target.space, repo_type="space", space_sdk="gradio", exist_ok=True,
                              private=config.private or None, space_hardware=config.hardware)
        if config.hardware != "cpu-basic":  # create_repo ignores it when the Space exists
            api.request_space_hardware(target.space, config.hardware)
    with hub_call(f"setting the variables of {target.space}"):
        api.add_space_variable(target.space, MODEL_VARIABLE, model,
                               description="Hub id of the Whisper model the app serves")
        if cookies is not None:
            api.add_space_secret(target.space, COOKIES_SECRET, cookies.content,
                                 description="youtube.com cookies (Netscape cookies.txt) for yt-dlp")
    with hub_call(f"uploading to {target.space}"):
        # The Space mirrors the staged folder: files from an older deploy are deleted.
        api.upload_folder(repo_id=target.space, repo_type="space", folder_path=str(folder),
                          commit_message=f"Deploy the whisper-gl {target.app} app ({model})",
                          delete_patterns=["*"])
    return str(url)


def publish_model(folder: Path, config: DeployConfig) -> str:
    """Push a local model folder to --model-repo and return that id (Spaces never hold weights)."""
    if not config.model_repo:
        raise WhisperGLError(f"--model {config.model} is a local folder: give --model-repo USER/NAME to push it "
                             "to the Hub first (a Space downloads its model, it never bundles weights)")
    _check_space_id(config.model_repo, "--model-repo")
    print(f"pushing the model {folder} to https://huggingface.co/{config.model_repo} ...")
    push_folder(folder, config.model_repo, commit_message="Upload the model served by the whisper-gl Spaces")
    return config.model_repo


# ---------------------------------------------------------------- entry point

def deploy(config: DeployConfig) -> list[str]:
    """Stage (--dry-run) or deploy the Spaces; return the staged folders or the Space URLs.

    Everything that can be checked locally is checked before the first Hub call.
    """
    targets = plan(config)
    check_checkout([target.app for target in targets])
    hardware = check_hardware(config.hardware)
    if config.cookies_file and not any(target.app == "youtube" for target in targets):
        raise WhisperGLError("--cookies-file is only for the youtube app")
    cookies = read_cookies(config.cookies_file) if config.cookies_file else None
    folder = local_model(config.model)
    if config.dry_run:
        return stage_only(targets, str(folder or config.model), Path(config.dry_run), hardware, cookies)

    from huggingface_hub import HfApi

    try:
        token = hub_token()
    except WhisperGLError:
        raise WhisperGLError("deploying needs a Hugging Face token with write access: run `hf auth login` or "
                             "set HF_TOKEN (or stage only, with --dry-run DIR)") from None
    api = HfApi(token=token)
    if folder:
        model = publish_model(folder, config)
    else:
        model = config.model
        with hub_call(f"looking up the model {model}"):
            if not api.repo_exists(model):
                raise WhisperGLError(f"model '{model}' is not on the Hub (or not visible with this token)")
    urls = []
    for target in targets:
        secret = cookies if target.app == "youtube" else None
        with tempfile.TemporaryDirectory(prefix="whisper-gl-space-") as tmp:
            staged = stage_space(target.app, target.space, model, Path(tmp) / "space", hardware)
            urls.append(upload_space(api, target, staged, model, config, secret))
        note = f" ({COOKIES_SECRET} secret: {secret.count} youtube.com cookies)" if secret else ""
        print(f"deployed {target.app}: {urls[-1]}{note}")
    return urls


def stage_only(targets: list[Target], model: str, root: Path, hardware: str,
               cookies: YouTubeCookies | None) -> list[str]:
    """--dry-run: stage into `root` (one subfolder per app when several); no Hub call at all."""
    if Path(model).is_dir():
        print(f"dry run: the Space uses the local folder {model}; a real deploy pushes it to --model-repo first")
    if cookies:
        print(f"dry run: a real deploy sets the {COOKIES_SECRET} secret ({cookies.count} youtube.com cookies)")
    staged = []
    for target in targets:
        folder = stage_space(target.app, target.space, model, root / target.app if len(targets) > 1 else root,
                             hardware)
        print(f"staged {target.app} for {target.space} in {folder} (nothing uploaded); "
              f"run it: cd {folder} && python app.py")
        staged.append(str(folder))
    return staged
