"""Turn a speech dataset (Common Voice release folder, audiofolder, Hub or Mozilla Data
Collective id) into Whisper training features: `python feature_extraction.py --help`.
The same as `whisper-gl features`."""

from whisper_gl.cli import door

if __name__ == "__main__":
    door("features")
