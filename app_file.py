"""The file transcription app (Gradio): `python app_file.py --help` lists its options."""
from functools import partial

from whisper_gl.apps import launch
from whisper_gl.cli import run

if __name__ == "__main__":
    run(partial(launch, "file"))
