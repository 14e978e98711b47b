"""The youtube transcription app (Gradio): `python app_youtube.py --help` lists its options."""

from whisper_gl.cli import door

if __name__ == "__main__":
    door("app", "youtube")
