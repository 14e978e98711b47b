"""Deploying the apps as Spaces: staging, the Hub calls (recorded, never sent), bad input,
and each staged Space launched as it is (`python app.py`) transcribing through gradio_client."""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from huggingface_hub import HfApi, SpaceCard

from tests.support import launched_app, serve_folder
from whisper_gl import WhisperGLError, deploy
from whisper_gl.cli import invoke
from whisper_gl.config import DeployConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_FakeTokenForTests0123456789abcdef"
TRAINING_PACKAGES = {"datasets", "accelerate", "peft", "evaluate", "jiwer", "matplotlib", "tensorboard"}


def run_deploy(argv: list[str]):
    """`whisper-gl deploy ARGV` in this process (user errors raise)."""
    return invoke(["deploy", *argv])


# ---------------------------------------------------------------- helpers

class HubRecorder:
    """Stands in for the HfApi methods deploy uses; records each call, sends nothing."""

    def __init__(self, repo_exists: bool = True, fail_create: Exception | None = None):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploads: dict[str, dict[str, bytes]] = {}  # repo id -> {path: content}, read at upload time
        self.tokens: set = set()
        self.repo_exists_answer = repo_exists
        self.fail_create = fail_create

    def install(self, monkeypatch):
        recorder = self

        def record(name):
            def method(api, *args, **kwargs):
                recorder.tokens.add(api.token)
                recorder.calls.append((name, args, kwargs))
                return getattr(recorder, f"_{name}")(*args, **kwargs)
            return method

        for name in ("create_repo", "upload_folder", "add_space_variable", "add_space_secret",
                     "repo_exists", "request_space_hardware"):
            monkeypatch.setattr(HfApi, name, record(name))

        def no_network(*args, **kwargs):
            raise AssertionError("a Hub request escaped the recorder")

        monkeypatch.setattr("huggingface_hub.hf_api.get_session", no_network)
        return self

    def _create_repo(self, repo_id, **kwargs):
        if self.fail_create:
            raise self.fail_create
        prefix = "spaces/" if kwargs.get("repo_type") == "space" else ""
        return f"https://huggingface.co/{prefix}{repo_id}"

    def _upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        self.uploads[repo_id] = {str(p.relative_to(folder)): p.read_bytes()
                                 for p in sorted(folder.rglob("*")) if p.is_file()}

    def _repo_exists(self, repo_id, **kwargs):
        return self.repo_exists_answer

    def _add_space_variable(self, *args, **kwargs):
        return {}

    def _add_space_secret(self, *args, **kwargs):
        return None

    def _request_space_hardware(self, *args, **kwargs):
        return None

    def named(self, name):
        return [(args, kwargs) for call, args, kwargs in self.calls if call == name]


@pytest.fixture
def hub(monkeypatch):
    return HubRecorder().install(monkeypatch)


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def fake_token(no_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return FAKE_TOKEN


@pytest.fixture
def model_folder(tmp_path) -> Path:
    """A folder that looks like a model to the store (weights are never read here)."""
    folder = tmp_path / "my-model"
    (folder / "ctranslate2").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "whisper"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    (folder / "ctranslate2" / "model.bin").write_bytes(b"\0" * 64)
    return folder


@pytest.fixture
def cookies_file(tmp_path) -> Path:
    rows = [
        (".youtube.com", "TRUE", "/", "TRUE", "2000000000", "LOGIN_INFO", "yt-secret-login"),
        ("#HttpOnly_.youtube.com", "TRUE", "/", "TRUE", "2000000000", "SID", "yt-secret-sid"),
        (".google.com", "TRUE", "/", "TRUE", "2000000000", "SID", "google-secret-sid"),
        (".mybank.example", "TRUE", "/", "TRUE", "2000000000", "session", "bank-secret"),
    ]
    path = tmp_path / "cookies.txt"
    path.write_text("# Netscape HTTP Cookie File\n\n" + "\n".join("\t".join(row) for row in rows) + "\n")
    return path


def front_matter(readme: str | bytes) -> dict:
    text = readme.decode() if isinstance(readme, bytes) else readme
    return SpaceCard(text).data.to_dict()


# ---------------------------------------------------------------- staging

def test_dry_run_stages_three_complete_spaces_without_any_hub_call(
        hub, no_token, model_folder, cookies_file, tmp_path, capsys):
    folders = deploy.deploy(DeployConfig(model=str(model_folder), all=True, space_prefix="tester/whisper-gl",
                                         dry_run=str(tmp_path / "spaces"), cookies_file=str(cookies_file)))

    assert hub.calls == []
    assert [Path(f).name for f in folders] == list(deploy.APPS)
    out = capsys.readouterr().out
    assert "a real deploy pushes it" in out and "nothing uploaded" in out
    assert "(2 youtube.com cookies)" in out and "yt-secret" not in out
    for app, folder in zip(deploy.APPS, map(Path, folders)):
        card = front_matter((folder / "README.md").read_text())
        assert card["sdk"] == "gradio" and card["sdk_version"] == metadata.version("gradio")
        assert card["app_file"] == "app.py" and (folder / "app.py").is_file()
        assert tuple(int(n) for n in card["python_version"].split(".")) >= (3, 11)
        assert card["title"] and card["emoji"] and len(card["short_description"]) <= 60
        assert "models" not in card  # a local folder is no Hub id: nothing to link yet
        assert (folder / "packages.txt").read_text().split() == ["ffmpeg"]
        app_py = (folder / "app.py").read_text()
        assert f'door("app", "{app}")' in app_py and str(model_folder) in app_py  # runs offline as staged
        staged_modules = sorted(p.stem for p in (folder / "whisper_gl").glob("*.py"))
        assert staged_modules == deploy.runtime_modules()
        assert not {"deploy", "training", "features"} & set(staged_modules)
        assert not list(folder.rglob("*.safetensors")) and not list(folder.rglob("model.bin"))  # no weights
        assert not any(b"yt-secret" in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_dry_run_replaces_an_earlier_staging_but_never_another_folder(hub, tmp_path):
    stage = ["--app", "file", "--space", "tester/x", "--model", "tester/m", "--dry-run"]
    run_deploy(stage + [str(tmp_path / "space")])
    run_deploy(stage + [str(tmp_path / "space")])  # restaging is fine
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    with pytest.raises(WhisperGLError, match="not a staged Space"):
        run_deploy(stage + [str(tmp_path / "work")])
    assert (tmp_path / "work" / "notes.txt").read_text() == "mine"
    assert hub.calls == []


def test_space_requirements_hold_inference_packages_only():
    for app in deploy.APPS:
        lines = deploy.space_requirements(app, "cpu-basic")
        names = {line.split("[")[0].split("=")[0].split(">")[0].split("<")[0] for line in lines
                 if not line.startswith("-")}
        assert not names & TRAINING_PACKAGES
        assert {"torch", "transformers", "faster-whisper", "gradio"} <= names
        assert f"gradio=={metadata.version('gradio')}" in lines
        assert ({"yt-dlp", "deno"} <= names) == (app == "youtube")
    assert deploy.TORCH_CPU_INDEX in deploy.space_requirements("file", "cpu-basic")
    assert deploy.TORCH_CPU_INDEX not in deploy.space_requirements("file", "t4-small")  # GPU: CUDA wheels


def _third_party_imports(module: str) -> set[str]:
    tree = ast.parse((deploy.PACKAGE_DIR / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "whisper_gl"}


@functools.cache
def _installed_closure(requirements: tuple[str, ...]) -> frozenset[str]:
    """Distributions that installing `requirements` brings (as installed here)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo = [Requirement(line) for line in requirements if not line.startswith("-")]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        extras = requirement.extras | {""}
        for dependency in map(Requirement, metadata.requires(name) or []):
            if not dependency.marker or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dependency)
    return frozenset(seen)


# Reads every installed distribution's file list: once per session is enough.
_packages_distributions = functools.cache(metadata.packages_distributions)


def _providers(import_name: str) -> set[str]:
    from packaging.utils import canonicalize_name

    return {canonicalize_name(d) for d in _packages_distributions().get(import_name, [])}


def test_every_import_of_the_staged_package_is_installed_by_the_space_requirements():
    imports = {module: _third_party_imports(module) for module in deploy.runtime_modules()}
    for app in deploy.APPS:
        installed = _installed_closure(tuple(deploy.space_requirements(app, "cpu-basic")))
        missing = {(module, name) for module, names in imports.items() for name in names
                   if not _providers(name) & installed}
        # The dataset loaders are staged for their registry (the --dataset help in config) and
        # import datasets only when a dataset is read, which no app does.
        lazy = {("sources", "datasets"), ("sources", "datacollective")}
        assert lazy <= missing
        if app == "youtube":
            assert missing == lazy
        else:  # only the link fetcher needs yt-dlp/deno, and only the youtube app calls it
            assert {module for module, _ in missing - lazy} == {"download"}


# ---------------------------------------------------------------- upload (recorded, never sent)

def test_deploy_all_pushes_a_local_model_then_creates_three_spaces(
        hub, fake_token, model_folder, cookies_file, capfd, caplog):
    caplog.set_level("DEBUG")
    run_deploy(["--all", "--space-prefix", "tester/whisper-gl", "--model", str(model_folder),
                 "--model-repo", "tester/whisper-gl-model", "--cookies-file", str(cookies_file)])

    spaces = [f"tester/whisper-gl-{app}" for app in deploy.APPS]
    assert hub.tokens == {FAKE_TOKEN}  # every call authenticated with the user's token
    # The model goes first, into a model repo; no Space holds weights.
    assert [(c, a[:1] or (k.get("repo_id"),), k.get("repo_type")) for c, a, k in hub.calls[:2]] == [
        ("create_repo", ("tester/whisper-gl-model",), "model"),
        ("upload_folder", ("tester/whisper-gl-model",), "model")]
    assert sorted(hub.uploads["tester/whisper-gl-model"]) == ["config.json", "ctranslate2/model.bin", "model.safetensors"]

    created = [(args, kwargs) for args, kwargs in hub.named("create_repo") if kwargs["repo_type"] == "space"]
    assert [args[0] for args, _ in created] == spaces
    assert all(k["space_sdk"] == "gradio" and k["exist_ok"] and k["space_hardware"] == "cpu-basic"
               for _, k in created)
    assert [args for args, _ in hub.named("add_space_variable")] == [
        (space, "WHISPER_GL_MODEL", "tester/whisper-gl-model") for space in spaces]
    assert hub.named("request_space_hardware") == []

    # The cookies secret: only on the YouTube Space, only youtube.com cookies, never printed.
    (secret_args, _), = hub.named("add_space_secret")
    space, key, value = secret_args
    assert (space, key) == ("tester/whisper-gl-youtube", "WHISPER_GL_YTDLP_COOKIES")
    assert "yt-secret-login" in value and "yt-secret-sid" in value
    assert "google-secret" not in value and "bank-secret" not in value

    for app, space in zip(deploy.APPS, spaces):
        files = hub.uploads[space]
        assert {"app.py", "README.md", "requirements.txt", "packages.txt", "whisper_gl/apps.py"} <= set(files)
        assert not any(name.endswith((".safetensors", ".bin")) for name in files)
        card = front_matter(files["README.md"])
        assert card["models"] == ["tester/whisper-gl-model"] == card["preload_from_hub"]
        assert b"'tester/whisper-gl-model'" in files["app.py"]
        (upload_kwargs,) = [k for a, k in hub.named("upload_folder") if k["repo_id"] == space]
        assert upload_kwargs["repo_type"] == "space"

    # Neither the token nor a cookie ever shows: not in output, logs or uploaded files.
    captured = capfd.readouterr()
    shown = captured.out + captured.err + caplog.text
    assert "https://huggingface.co/spaces/tester/whisper-gl-youtube" in captured.out
    for secret in (FAKE_TOKEN, "yt-secret-login", "yt-secret-sid", "google-secret"):
        assert secret not in shown
        assert not any(secret.encode() in content for files in hub.uploads.values() for content in files.values())


def test_deploy_with_a_hub_model_checks_it_and_sets_hardware(hub, fake_token, capsys):
    run_deploy(["--app", "file", "--space", "tester/gl-file", "--model", "tester/whisper-small-gl",
                 "--hardware", "cpu-upgrade", "--private"])

    assert [c for c, _, _ in hub.calls] == ["repo_exists", "create_repo", "request_space_hardware",
                                            "add_space_variable", "upload_folder"]
    (_, create), = hub.named("create_repo")
    assert create["private"] is True and create["space_hardware"] == "cpu-upgrade"
    assert hub.named("request_space_hardware")[0][0] == ("tester/gl-file", "cpu-upgrade")
    assert FAKE_TOKEN not in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--app", "podcast", "--space", "tester/x"], "invalid choice: 'podcast'"),
    (["--app", "file", "--space", "whisper-gl-file"], "has no namespace"),
    (["--all", "--space-prefix", "whisper-gl"], "has no namespace"),
    (["--app", "file"], "--space USER/NAME"),
    (["--app", "file", "--space", "tester/x", "--all", "--space-prefix", "tester/y"], "either --app"),
    (["--app", "file", "--space", "tester/x", "--hardware", "quantum"], "unknown --hardware"),
    (["--app", "file", "--space", "tester/x", "--cookies-file", "cookies.txt"], "only for the youtube app"),
])
def test_bad_input_is_refused_before_any_hub_call(hub, fake_token, argv, message):
    with pytest.raises(WhisperGLError, match=message):
        run_deploy(argv + ["--model", "tester/model"])
    assert hub.calls == []


def test_a_local_model_without_model_repo_is_refused(hub, fake_token, model_folder):
    with pytest.raises(WhisperGLError, match="--model-repo"):
        run_deploy(["--app", "file", "--space", "tester/x", "--model", str(model_folder)])
    assert hub.calls == []


def test_no_token_is_refused_and_nothing_is_uploaded(hub, no_token, model_folder):
    for model in ("tester/model", str(model_folder)):
        with pytest.raises(WhisperGLError, match="needs a Hugging Face token"):
            run_deploy(["--app", "file", "--space", "tester/x", "--model", model, "--model-repo", "tester/m"])
    assert hub.calls == []


def test_a_missing_hub_model_is_refused_before_the_space_is_created(monkeypatch, fake_token):
    hub = HubRecorder(repo_exists=False).install(monkeypatch)
    with pytest.raises(WhisperGLError, match="not on the Hub"):
        run_deploy(["--app", "file", "--space", "tester/x", "--model", "tester/typo"])
    assert [c for c, _, _ in hub.calls] == ["repo_exists"]


def test_a_cookies_file_without_youtube_cookies_is_refused(hub, fake_token, tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n.google.com\tTRUE\t/\tTRUE\t2000000000\tSID\tsecret\n")
    with pytest.raises(WhisperGLError, match="no youtube.com cookies"):
        run_deploy(["--app", "youtube", "--space", "tester/x", "--model", "tester/m", "--cookies-file", str(cookies)])
    cookies.write_text('[{"domain": ".youtube.com"}]\n')  # a JSON export
    with pytest.raises(WhisperGLError, match="Netscape"):
        run_deploy(["--app", "youtube", "--space", "tester/x", "--model", "tester/m", "--cookies-file", str(cookies)])
    assert hub.calls == []


def test_a_payment_refusal_becomes_one_clear_line(monkeypatch, fake_token):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(402, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))
    hub = HubRecorder(fail_create=HfHubHTTPError("402 Payment Required", response=response)).install(monkeypatch)
    with pytest.raises(WhisperGLError, match="PRO") as error:
        run_deploy(["--app", "file", "--space", "tester/x", "--model", "tester/m"])
    assert "\n" not in str(error.value) and FAKE_TOKEN not in str(error.value)
    assert hub.named("upload_folder") == []


def test_command_line_prints_one_error_line():
    result = subprocess.run([sys.executable, "-m", "whisper_gl", "deploy", "--app", "radio", "--space", "tester/x",
                             "--model", "tester/m"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: argument --app: invalid choice: 'radio' (choose from ")
    assert line.endswith("(see whisper-gl deploy --help)")


# ---------------------------------------------------------------- the staged Space, launched as it is

def _project() -> dict:
    import tomllib

    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _blocked_imports(app: str) -> list[str]:
    """Import names of repository requirements that the app's Space does not install."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    installed = _installed_closure(tuple(deploy.space_requirements(app, "cpu-basic")))
    repo = [*deploy.project_dependencies().values(), *_project()["optional-dependencies"]["train"]]
    absent = {canonicalize_name(Requirement(line).name) for line in repo} - installed
    return sorted(name for name, dists in _packages_distributions().items()
                  if {canonicalize_name(d) for d in dists} <= absent and not name.startswith("_"))


@pytest.mark.slow
@pytest.mark.parametrize("app", deploy.APPS)
def test_staged_space_runs_as_is_and_transcribes(app, base_model_dir, examples_dir, tmp_path):
    from gradio_client import Client, handle_file

    folder = Path(deploy.deploy(DeployConfig(model=str(base_model_dir), app=app, space=f"tester/gl-{app}",
                                             dry_run=str(tmp_path / "space")))[0])
    # The Space's import path: the staged folder only, with the repository's training
    # packages (and, off YouTube, yt-dlp/deno) made unimportable, as on the Space.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    blocked = _blocked_imports(app)
    assert {"datasets", "peft", "accelerate"} <= set(blocked)
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # `import name` now fails as if it were not installed\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(blocker), WHISPER_GL_MODEL=str(base_model_dir), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", WHISPER_GL_ALLOW_PRIVATE_URLS="1")

    imported = subprocess.run([sys.executable, "-c", "import whisper_gl; print(whisper_gl.__file__)"],
                              cwd=folder, env=env, capture_output=True, text=True, check=True).stdout
    assert Path(imported.strip()).parent == folder / "whisper_gl"

    clip = examples_dir / "short.mp3"
    with serve_folder(examples_dir) as web, launched_app("app.py", folder, env, tmp_path / "app.log") as (url, _):
        client = Client(url, verbose=False)
        source = f"{web}/{clip.name}" if app == "youtube" else handle_file(str(clip))
        text, srt, timing = client.predict(source, api_name="/transcribe")
        if app == "youtube":  # a refused link answers with a message, not a stack trace
            with pytest.raises(Exception, match="http"):
                client.predict("file:///etc/passwd", api_name="/transcribe")

    assert text.strip()  # the untuned base's words are not judged: which ones it writes depends on the CPU
    assert "-->" in Path(srt).read_text()
    assert "backend" in timing
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log
