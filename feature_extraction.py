#!/usr/bin/env python
"""Turn a speech dataset (Common Voice release folder, audiofolder, Hub or Mozilla Data
Collective id) into Whisper training features: log-mel input_features at each clip's real
length (float16) and token labels, saved as a DatasetDict (train, test) with reports."""

from whisper_gl.cli import parse_config, run
from whisper_gl.config import FeatureConfig


def main() -> None:
    from whisper_gl.features import extract_features

    extract_features(parse_config(FeatureConfig, __doc__))


if __name__ == "__main__":
    run(main)
