"""whisper_gl.shutdown: SIGTERM and SIGINT stop a server cleanly, in-flight downloads included,
and remove its folders, only its own (a small process with a download in flight; no model)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import internal_and_hostile_sites
from whisper_gl import shutdown
from whisper_gl.download import ALLOW_PRIVATE_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]

# A server in miniature: a folder kept for its life, a download in flight on a slow site, and
# the main thread waiting for a signal, as Gradio's does.
SERVER = """
import signal, sys, threading, time
from whisper_gl import shutdown
from whisper_gl.config import MediaLimits
from whisper_gl.download import downloaded_audio

def fetch():
    try:
        with downloaded_audio(sys.argv[1], MediaLimits(max_bytes=10**9, download_seconds=600, rate_grace_seconds=600)):
            pass
    except Exception as error:
        print("download:", error, flush=True)

# A shell's background job starts with SIGINT ignored, and Python then keeps it ignored: this
# server stands for one started from a terminal, where Ctrl-C interrupts.
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    with shutdown.serving():
        (shutdown.kept_folder("whisper-gl-cache-") / "upload.bin").write_bytes(b"x")
        threading.Thread(target=fetch).start()
        print("serving", flush=True)
        while True:
            time.sleep(0.1)
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_downloads_and_removes_only_our_folders(stop, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    foreign = tmp / "whisper-gl-download-of-another-process" / "audio.webm.part"
    foreign.parent.mkdir()
    foreign.write_bytes(b"not ours")
    with internal_and_hostile_sites() as (site, _, _):
        env = {**os.environ, "TMPDIR": str(tmp), ALLOW_PRIVATE_ENV: "1", "PYTHONPATH": str(REPO_ROOT)}
        server = subprocess.Popen([sys.executable, "-c", SERVER, f"{site}/steady.mp3"], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert server.stdout.readline().strip() == "serving"
            deadline = time.monotonic() + 30
            while not any(p.name.endswith(".part") for p in _files(tmp) if p != foreign):  # mid-download
                assert time.monotonic() < deadline, "the download never started"
                time.sleep(0.1)

            server.send_signal(stop)
            output, _ = server.communicate(timeout=shutdown.RELEASE_WAIT_S + 10)
        finally:
            server.kill()
    assert server.returncode == 0, output
    assert "download: the server is shutting down" in output and "stopped" in output
    assert _files(tmp) == [foreign]  # ours gone, another process's kept
