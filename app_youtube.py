"""The youtube transcription app (Gradio): `python app_youtube.py --help` lists its options."""
from functools import partial

from whisper_gl.apps import launch
from whisper_gl.cli import run

if __name__ == "__main__":
    run(partial(launch, "youtube"))
