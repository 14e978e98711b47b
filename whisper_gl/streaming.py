"""Live transcription: text while the person is still speaking.

    live = live_transcript(Transcriber("artifacts/model"))
    for chunk in microphone:                             # any length; any rate, mono or not
        update = live.push(chunk, sampling_rate=48_000)
        show(update.confirmed, update.tentative)          # confirmed only ever grows
    result = live.finish()                                # the whole recording, decoded again

The policy is LocalAgreement-2 (Macháček et al. 2023, Whisper-Streaming): the audio not yet
settled is held in a buffer and decoded again whenever `step_seconds` of new audio has
arrived; the words on which two consecutive decodes agree (their common prefix, compared
without case or punctuation) are confirmed and never change; the rest of the latest decode
is the tentative tail. Each decode is the engine's (`Transcriber.decode_window`: token budget,
loops collapsed) with word timestamps, at the first temperature only (the agreement of two
decodes is the guard that the fallback is offline, at a fraction of its cost) and
`LiveOptions.beam_size`, encoded in a short window (`LiveOptions.window_seconds`, which
CTranslate2's encoder pays for in proportion). Decodes are paced by their own cost (`LiveOptions.paced`): one waits for at least
as much new audio as the last took to decode, so a busy CPU decodes less often instead of
falling behind; audio pushed at once (a backlog) is taken a step at a time.

The buffer stays bounded, so an hour costs what a minute does per second of audio: once it
holds more than `trim_seconds` it is cut at the end of the last segment whose words are all
confirmed, and at a pause once everything in it is confirmed; with `LiveOptions.prompt`, the
confirmed text that was cut away prompts the next decodes. Near the window's end it is cut at
the last confirmed word (confirming the tentative words first if none is). Silero VAD keeps silence out: a buffer
without speech is dropped undecoded (silence and noise give no text), words the model timed
after the last speech are not kept, and nothing is decoded again until new speech arrives.

finish() confirms what is left and transcribes the whole recording once more through the
engine's normal path (kept as 16-bit samples: 1.9 MB a minute; keep_audio=False keeps none
and returns the live words as the transcription).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import WhisperGLError
from .audio import AudioTooLong, as_waveform
from .config import DecodingOptions, LiveOptions, MediaLimits
from .transcript import Segment, Transcription, Word
from .vad import MIN_SPEECH_SECONDS, speech_spans
from .window import SAMPLING_RATE, Window

# A live decode keeps at least this much silence after the buffer in its window: with less,
# the fine-tuned demo model looped on sentence-long chunks (long.mp3 in VAD chunks: WER 115 %
# padded by 1 s, 74 % by 3 s, 46 % by 6 s, 45 % by a full 30 s window).
WINDOW_MARGIN_SECONDS = 5.0
SILENCE_KEPT_SECONDS = 0.5  # of a buffer without speech: a word may be starting
OVERLAP_WORDS = 5  # confirmed words looked for at the start of a new decode
MATCH_SECONDS = 1.0  # how far a new decode may time a confirmed word from where it was confirmed
PROMPT_CHARACTERS = 200  # of the confirmed text cut from the buffer (Whisper-Streaming's choice)
SENTENCE_END = ".?!…"
PUNCTUATION = SENTENCE_END + ",;:"


@dataclass(frozen=True)
class LiveUpdate:
    """Where a live transcript stands: `confirmed` never changes once given (it only grows,
    by `delta`); `tentative` is the latest decode's guess at what follows, and may change."""

    confirmed: str
    tentative: str
    delta: str  # what this push confirmed: confirmed == the previous update's confirmed + delta
    seconds: float  # audio received so far

    @property
    def text(self) -> str:
        """The confirmed and the tentative text as one line, spaced as the engine spaces words
        (what a caption shows: confirmed + text[len(confirmed):] styled apart)."""
        return _joined([Word(0.0, 0.0, " " + part, None) for part in (self.confirmed, self.tentative) if part])


def _key(text: str) -> str:
    """A word as the agreement compares it: letters and digits, lower case."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _joined(words: list[Word]) -> str:
    return "".join(word.text for word in words).strip()


def after_confirmed(words: list[Word], confirmed: list[Word]) -> list[Word]:
    """The words of a new decode that follow the confirmed ones. The buffer may still hold the
    audio of the last confirmed words: they are found by text (the longest run, up to
    OVERLAP_WORDS, of the confirmed tail that the decode repeats near where it was confirmed),
    else by time (words centred after the last confirmed one)."""
    if not confirmed:
        return words
    last = confirmed[-1].end
    tail = [_key(word.text) for word in confirmed[-OVERLAP_WORDS:]]
    keys = [_key(word.text) for word in words]
    for size in range(len(tail), 0, -1):
        for end in range(len(words), size - 1, -1):
            if abs(words[end - 1].end - last) <= MATCH_SECONDS and keys[end - size: end] == tail[-size:]:
                return words[end:]
    return [word for word in words if (word.start + word.end) / 2 > last]


def agreed_prefix(new: list[Word], previous: list[Word]) -> int:
    """How many leading words two consecutive decodes agree on (LocalAgreement-2)."""
    count = 0
    while count < min(len(new), len(previous)) and _key(new[count].text) == _key(previous[count].text):
        count += 1
    return count


def sentences(words: list[Word], max_gap: float = 1.0) -> list[Segment]:
    """Timed words grouped into segments, split after a sentence's end or at a pause."""
    segments, current = [], []
    for word in words:
        if current and (word.start - current[-1].end > max_gap or current[-1].text.strip()[-1:] in SENTENCE_END):
            segments.append(Segment(current[0].start, current[-1].end, _joined(current), tuple(current)))
            current = []
        current.append(word)
    if current:
        segments.append(Segment(current[0].start, current[-1].end, _joined(current), tuple(current)))
    return segments


class Engine(Protocol):
    """What a live transcript needs of the engine (a whisper_gl.transcribe.Transcriber, or a
    wrapper of one that bounds how many decode at once)."""

    window: Window
    backend: str
    model: str

    def decoding_for(self, decoding: DecodingOptions | None = None, **settings) -> DecodingOptions: ...

    def decode_window(self, waveform: np.ndarray, decoding: DecodingOptions, window: Window | None = None): ...

    def transcribe(self, audio, decoding: DecodingOptions | None = None, **settings) -> Transcription: ...


def live_transcript(engine: Engine, decoding: DecodingOptions | None = None, *, live: LiveOptions | None = None,
                    keep_audio: bool = True, max_seconds: float | None = None, **settings) -> "LiveTranscript":
    """A live transcript of audio that arrives while it is spoken, decoded by `engine`:

        live = live_transcript(engine, max_seconds=1800)
        update = live.push(samples, sampling_rate=48000)   # update.confirmed, update.tentative
        result = live.finish()                              # the whole recording, decoded again

    `decoding` and keyword settings as for Transcriber.transcribe; `live`: how often to decode and
    how much audio to hold (LiveOptions); keep_audio: keep the recording for finish()'s full
    decode; max_seconds: refuse audio past this length (AudioTooLong).
    """
    return LiveTranscript(engine, engine.decoding_for(decoding, **settings), live or LiveOptions(),
                          keep_audio=keep_audio, max_seconds=max_seconds)


class LiveTranscript:
    """One live recording's transcript (live_transcript() makes one). push() from one thread
    or several (calls are serialised); close() or finish() at the end."""

    def __init__(self, engine: Engine, decoding: DecodingOptions, live: LiveOptions, *,
                 keep_audio: bool = True, max_seconds: float | None = None):
        self.engine, self.live, self.max_seconds = engine, live, max_seconds
        self._final_decoding = decoding
        self._decoding = dataclasses.replace(decoding, word_timestamps=True, beam_size=live.beam_size,
                                             temperatures=decoding.temperatures[:1])
        self.window = Window.of_seconds(min(live.window_seconds, engine.window.seconds))
        margin = min(WINDOW_MARGIN_SECONDS, self.window.seconds / 3)
        self._max_buffer = round((self.window.seconds - margin) * SAMPLING_RATE)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # samples of the recording before the buffer
        self._received = 0
        self._undecoded = 0  # samples received since the last decode
        self._heard_until = 0  # end of the speech (samples into the recording) at the last decode
        self._kept: list[np.ndarray] | None = [] if keep_audio else None
        self._confirmed: list[Word] = []
        self._tentative: list[Word] = []
        # The last decode's segments: (end of the last word, end), in the recording's seconds.
        self._segment_ends: list[tuple[float, float]] = []
        self._resampler, self._rate = None, SAMPLING_RATE
        self._lock = threading.Lock()
        self._closed = False
        self._result: Transcription | None = None
        self.decodes, self.decode_seconds = 0, 0.0  # for benchmarks: live decodes and their time
        # A decode waits for at least as much new audio as the last one took to decode: a caller
        # that pushes every chunk as it arrives then catches up after a slow decode instead of
        # falling further behind with every step (a 2-core CPU shared by several sessions).
        self._last_decode_seconds = 0.0

    # --- what the caller reads ---------------------------------------------------------

    @property
    def text(self) -> str:
        """The confirmed text."""
        return _joined(self._confirmed)

    @property
    def words(self) -> list[Word]:
        """The confirmed words, timed in the recording (seconds from its start)."""
        return list(self._confirmed)

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self._received / SAMPLING_RATE

    @property
    def buffered_seconds(self) -> float:
        """Audio held for the next decode (bounded, however long the recording)."""
        return len(self._buffer) / SAMPLING_RATE

    def snapshot(self) -> LiveUpdate:
        """Where the transcript stands, without pushing anything."""
        return LiveUpdate(self.text, _joined(self._tentative), "", self.seconds)

    # --- what the caller does --------------------------------------------------------------

    def push(self, samples: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> LiveUpdate:
        """Add audio (float or integer PCM, mono or (samples, channels)); decode when
        step_seconds of it has arrived since the last decode. Past max_seconds, the audio that
        fits is kept and AudioTooLong is raised (close() or finish() then end the transcript)."""
        with self._lock:
            if self._closed:
                raise WhisperGLError("this live transcript is closed")
            before = len(self._confirmed)
            waveform = self._resampled(as_waveform(np.asarray(samples)), sampling_rate)
            room = math.inf if self.max_seconds is None else round(self.max_seconds * SAMPLING_RATE) - self._received
            kept = waveform[: max(0, int(min(room, len(waveform))))]
            # A long push (a backlog, a file) is taken a step at a time: the buffer never holds
            # more than one live window, whatever the caller sends at once.
            piece = round(self.live.step_seconds * SAMPLING_RATE)
            for start in range(0, len(kept), piece):
                self._add(kept[start: start + piece])
                if self._undecoded >= self._step_seconds() * SAMPLING_RATE or len(self._buffer) > self._max_buffer:
                    self._step(final=False)
            if len(waveform) > room:
                raise AudioTooLong(MediaLimits(max_seconds=self.max_seconds).too_long())
            return self._update(before)

    def close(self) -> LiveUpdate:
        """No more audio: decode what is left and confirm all of it (the update's delta is the
        last of the live text). Closing twice changes nothing."""
        with self._lock:
            before = len(self._confirmed)
            if not self._closed:
                self._closed = True
                self._flush_resampler()
                if self._undecoded or self._tentative:
                    self._step(final=True)
                self._buffer = np.zeros(0, dtype=np.float32)
            return self._update(before)

    def finish(self) -> Transcription:
        """close(), then the whole recording decoded once more by the engine's normal path
        (Transcriber.transcribe with the stream's decoding options); without keep_audio, the
        live words as the transcription. The kept audio is released; the result is kept."""
        self.close()
        with self._lock:
            if self._result is None:
                if self._kept is None:
                    self._result = self._live_transcription()
                else:
                    audio = np.concatenate(self._kept) if self._kept else np.zeros(0, dtype=np.int16)
                    self._kept = None
                    self._result = self.engine.transcribe(audio, self._final_decoding)
            return self._result

    # --- the policy ------------------------------------------------------------------------

    def _add(self, waveform: np.ndarray) -> None:
        if not len(waveform):
            return
        self._buffer = np.concatenate([self._buffer, waveform])
        self._received += len(waveform)
        self._undecoded += len(waveform)
        if self._kept is not None:
            self._kept.append((np.clip(waveform, -1, 1) * 32767).astype(np.int16))

    def _step_seconds(self) -> float:
        return max(self.live.step_seconds, self._last_decode_seconds) if self.live.paced else self.live.step_seconds

    def _step(self, final: bool) -> None:
        """Decode the buffer if it holds new speech, confirm what two decodes agree on, trim."""
        self._undecoded = 0
        if len(self._buffer) < MIN_SPEECH_SECONDS * SAMPLING_RATE:
            return
        spans = speech_spans(self._buffer, self.window.seconds)
        if not spans:  # silence or noise: nothing to say, nothing worth holding
            self._tentative = []
            self._cut(len(self._buffer) - round(SILENCE_KEPT_SECONDS * SAMPLING_RATE))
            return
        speech_end = self._offset + spans[-1][1]
        if speech_end > self._heard_until or self._tentative or final:
            self._heard_until = max(self._heard_until, speech_end)
            fresh = after_confirmed(self._decoded_words(speech_end), self._confirmed)
            agreed = len(fresh) if final else agreed_prefix(fresh, self._tentative)
            self._confirmed += fresh[:agreed]
            self._tentative = fresh[agreed:]
        # Pauses: where one span of speech ends (a silence of VAD_MIN_SILENCE_MS or more), and
        # the end of the last one once the silence after it has lasted that long.
        self._trim([(self._offset + end) / SAMPLING_RATE for _, end in spans if end < len(self._buffer)])

    def _decoded_words(self, speech_end: int) -> list[Word]:
        """The buffer's words, timed in the recording, up to the end of its speech."""
        began = time.perf_counter()
        options = self._decoding
        prompt = self._prompt()
        if prompt:
            options = dataclasses.replace(options, initial_prompt=prompt)
        decoded = self.engine.decode_window(self._buffer, options, self.window)
        if options.forced_language is None and decoded.language:  # detected once, then kept
            self._decoding = dataclasses.replace(self._decoding, language=decoded.language)
        self._last_decode_seconds = time.perf_counter() - began
        self.decodes += 1
        self.decode_seconds += self._last_decode_seconds
        offset = self._offset / SAMPLING_RATE
        self._segment_ends = [(offset + segment.words[-1].end, offset + segment.end)
                              for segment in decoded.segments if segment.words]
        words = []
        for segment in decoded.segments:
            for index, word in enumerate(segment.words):
                text = word.text
                previous = segment.words[index - 1].text if index else ""
                if index == 0 or text.lstrip()[:1] in PUNCTUATION or previous.rstrip()[-1:] in PUNCTUATION:
                    # A word of its own: a segment's first, one after punctuation ("t.A"), or one that
                    # opens with the last one's full stop (".O", transformers' alignment).
                    text = " " + text.lstrip().lstrip(PUNCTUATION).lstrip()
                if offset + word.start < speech_end / SAMPLING_RATE and _key(text):
                    words.append(Word(round(offset + word.start, 3), round(offset + word.end, 3), text,
                                      word.probability))
        return words

    def _prompt(self) -> str:
        """The end of the confirmed text whose audio has left the buffer."""
        if not self.live.prompt:
            return self._decoding.initial_prompt or ""
        start, cut = len(self._confirmed), self._offset / SAMPLING_RATE
        while start and self._confirmed[start - 1].end > cut:
            start -= 1
        words, length = [], 0
        for word in reversed(self._confirmed[:start]):
            if length + len(word.text) > PROMPT_CHARACTERS:
                break
            words.append(word)
            length += len(word.text)
        return _joined(words[::-1]) or (self._decoding.initial_prompt or "")

    def _trim(self, pauses: list[float]) -> None:
        """Cut the buffer where every word before the cut is confirmed (and none after): at the
        last such pause once the buffer is longer than trim_seconds (or everything in it is
        settled), else at the end of the last confirmed segment; past the window's margin,
        wherever the latest decode's words allow."""
        settled = self._confirmed[-1].end if self._confirmed else 0.0
        first_tentative = self._tentative[0].start if self._tentative else math.inf
        long = len(self._buffer) > self.live.trim_seconds * SAMPLING_RATE
        if long or not self._tentative:
            cuts = [pause for pause in pauses if settled - 0.05 <= pause <= first_tentative]
            if cuts:
                self._cut_at(cuts[-1])
            elif long:
                cuts = [end for last_word, end in self._segment_ends if last_word <= settled and end <= first_tentative]
                if cuts:
                    self._cut_at(cuts[-1])
        if len(self._buffer) > self._max_buffer:  # no agreement for a whole window: the latest decode it is
            self._confirmed += self._tentative
            self._tentative = []
            end = (self._offset + len(self._buffer)) / SAMPLING_RATE
            last = self._confirmed[-1].end if self._confirmed else 0.0
            self._cut_at(last if last > self._offset / SAMPLING_RATE else end - SILENCE_KEPT_SECONDS)

    def _cut_at(self, seconds: float) -> None:
        self._cut(round(seconds * SAMPLING_RATE) - self._offset)

    def _cut(self, samples: int) -> None:
        """Drop the first `samples` of the buffer (and the tentative words they held)."""
        samples = min(max(0, samples), len(self._buffer))
        self._buffer = self._buffer[samples:]
        self._offset += samples
        self._tentative = [word for word in self._tentative if word.end > self._offset / SAMPLING_RATE]

    def _resampled(self, waveform: np.ndarray, rate: int) -> np.ndarray:
        """16 kHz samples, through one streaming resampler for the whole recording (no seams)."""
        if rate == SAMPLING_RATE and self._resampler is None:
            return waveform
        if self._resampler is None:
            import soxr

            self._resampler, self._rate = soxr.ResampleStream(rate, SAMPLING_RATE, 1, dtype="float32"), rate
        if rate != self._rate:
            raise WhisperGLError(f"the sampling rate changed from {self._rate} to {rate} Hz mid-recording")
        return self._resampler.resample_chunk(waveform)

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            self._add(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))

    def _update(self, before: int) -> LiveUpdate:
        delta = "".join(word.text for word in self._confirmed[before:])
        return LiveUpdate(self.text, _joined(self._tentative), delta.lstrip() if not before else delta, self.seconds)

    def _live_transcription(self) -> Transcription:
        segments = sentences(self._confirmed)
        return Transcription(text=" ".join(segment.text for segment in segments), segments=segments,
                             language=self._decoding.forced_language or "", duration=round(self.seconds, 3),
                             elapsed=self.decode_seconds, backend=self.engine.backend, model=self.engine.model)
