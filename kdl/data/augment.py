"""Waveform augmentation of training batches, for voices the model has not heard: tempo (speed),
pitch, gain, background noise, a short reverb and a time shift, drawn per clip with
`audiomentations` on numpy inside the tf.data pipeline (so the same on every backend).

Only the batches `model.fit` trains on are augmented (`kdl.data.pipeline.batches(...,
augment=...)`, which the audio recipes pass for their shuffled train split); validation, test,
`evaluate` and `predict` inputs never are. SpecAugment (inside the model) is separate.

Each augmentation is off at 0 and applied to a clip with chance `probability`:

- `speed`: the tempo changes by a factor drawn from 1 - speed .. 1 + speed (`TimeStretch`);
- `pitch`: the pitch moves by up to this many semitones up or down (`PitchShift`);
- `gain`: the level changes by up to this many dB up or down (`Gain`);
- `eq`: another microphone and room colouring: a low shelf, five peaking bands and a high shelf,
  each cutting or boosting by up to this many dB at a random frequency below 0.45 x the sample
  rate (`LowShelfFilter`, `PeakingFilter`, `HighShelfFilter`; audiomentations' own
  `SevenBandParametricEQ` places bands up to 9.5 kHz, above the Nyquist frequency of 8 kHz audio,
  where its filters give NaN);
- `noise`: coloured background noise (white to brown) at a signal-to-noise ratio drawn from
  `noise` to `noise + 20` dB (`AddColorNoise`);
- `reverb`: a synthetic room, exponentially decaying noise with a reverberation time (RT60) of
  0.05 s up to `reverb` seconds, convolved with the clip (an `audiomentations.Lambda`);
- `shift`: the speech starts up to `shift` seconds later, taken from the clip's trailing silence.

A clip's speech is never cut: the speech part (up to its last sample above 1e-4) is augmented
and padded back to the clip length; a clip whose augmented speech would not fit is kept as it was.
The draws are seeded (`seed`), so the same run sees the same augmented batches.

>>> import numpy as np
>>> augment = Augmenter(AugmentConfig(gain=6.0, probability=1.0), sample_rate=8000, seed=0)
>>> batch = np.zeros((2, 800), np.float32); batch[:, :400] = 0.1
>>> out = augment(batch)
>>> out.shape, bool(np.allclose(out, batch)), bool((out[:, 400:] == 0).all())
((2, 800), False, True)
"""

import dataclasses
import random
import threading

import numpy as np

from kdl.config import setting

SILENCE = 1e-4    # samples at most this loud after the last louder one are the clip's trailing silence


@dataclasses.dataclass
class AugmentConfig:
    """`[data.augment]`: waveform augmentation of training batches; every kind is off at 0."""

    probability: float = setting(0.5, at_least=0)    # chance (0-1) that each kind is applied to a clip
    speed: float = setting(0.0, at_least=0, below=0.5)   # tempo factor from 1 - speed to 1 + speed
    pitch: float = setting(0.0, at_least=0)   # semitones up or down
    gain: float = setting(0.0, at_least=0)    # dB up or down
    eq: float = setting(0.0, at_least=0)      # dB each of 7 random frequency bands is cut or boosted
    noise: float = setting(0.0, at_least=0)   # background noise at noise .. noise + 20 dB SNR; 0: off
    reverb: float = setting(0.0, at_least=0)  # seconds: longest reverberation time (RT60) of a room
    shift: float = setting(0.0, at_least=0)   # seconds: start the speech up to this much later

    @property
    def active(self):
        return self.probability > 0 and any((self.speed, self.pitch, self.gain, self.eq, self.noise,
                                             self.reverb, self.shift))


def _equalizer(A, db, sample_rate, p):
    """A random 7-band equalizer within the audio's band: a low shelf at 50-120 Hz, five peaking
    bands between 80 Hz and 0.45 x sample_rate (geometrically spaced ranges), a high shelf at
    0.3-0.45 x sample_rate; each cuts or boosts by up to `db`."""
    top = 0.45 * sample_rate
    edges = np.geomspace(80.0, top, 6)
    bands = [A.LowShelfFilter(50.0, 120.0, -db, db, p=1.0)]
    bands += [A.PeakingFilter(min_center_freq=low, max_center_freq=high, min_gain_db=-db, max_gain_db=db,
                              p=1.0) for low, high in zip(edges, edges[1:])]
    bands.append(A.HighShelfFilter(min_center_freq=0.3 * sample_rate, max_center_freq=top,
                                   min_gain_db=-db, max_gain_db=db, p=1.0))
    return A.Compose(bands, p=p)


class Augmenter:
    """Augments a (batch, samples) float32 batch of clips (see the module docstring)."""

    _lock = threading.Lock()     # audiomentations draws from the global `random` and numpy generators

    def __init__(self, config, sample_rate, seed=0):
        import audiomentations as A  # imported only when augmentation is on

        from kdl.errors import ConfigError

        if not 0 <= config.probability <= 1:
            raise ConfigError(f"data.augment.probability must be from 0 to 1; got {config.probability!r}")
        if config.eq and sample_rate < 1000:
            raise ConfigError(f"data.augment.eq needs audio of at least 1000 Hz (its bands start at 50 Hz "
                              f"and end below 0.45 x the sample rate); data.sample_rate is {sample_rate}")
        self.config, self.sample_rate = config, sample_rate
        self.rng = np.random.default_rng([seed, 7])
        p, transforms = config.probability, []
        if config.speed:
            transforms.append(A.TimeStretch(1 - config.speed, 1 + config.speed, leave_length_unchanged=False,
                                            method="signalsmith_stretch", p=p))
        if config.pitch:
            transforms.append(A.PitchShift(-config.pitch, config.pitch, method="signalsmith_stretch", p=p))
        if config.gain:
            transforms.append(A.Gain(-config.gain, config.gain, p=p))
        if config.eq:
            transforms.append(_equalizer(A, config.eq, sample_rate, p))
        if config.reverb:
            transforms.append(A.Lambda(self._reverb, p=p))
        if config.noise:
            transforms.append(A.AddColorNoise(config.noise, config.noise + 20, p=p))
        self.transform = A.Compose(transforms) if transforms else None

    def _reverb(self, samples, sample_rate):
        """The clip in a synthetic room: convolved with decaying noise of a random RT60."""
        from scipy.signal import fftconvolve

        rt60 = random.uniform(0.05, max(self.config.reverb, 0.05))
        t = np.arange(int(rt60 * sample_rate)) / sample_rate
        response = np.random.normal(size=len(t)) * np.exp(-6.9 * t / rt60)    # -60 dB at rt60
        response[0] = 1.0                                                        # the direct sound
        wet = fftconvolve(samples, response / np.sqrt(np.sum(response ** 2)))[:len(samples) + len(t)]
        peak = np.abs(wet).max()
        return (wet * (np.abs(samples).max() / peak if peak > 0 else 1.0)).astype(np.float32)

    def __call__(self, batch):
        batch = np.asarray(batch, np.float32)
        out = batch.copy()
        seeds = self.rng.integers(0, 2 ** 31, len(batch))
        with self._lock:
            saved = random.getstate(), np.random.get_state()
            try:
                for i, (clip, seed) in enumerate(zip(batch, seeds)):
                    random.seed(int(seed))
                    np.random.seed(int(seed))
                    out[i] = self.augment_clip(clip)
            finally:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
        return out

    def augment_clip(self, clip):
        loud = np.flatnonzero(np.abs(clip) > SILENCE)
        if loud.size == 0:
            return clip
        speech = clip[:loud[-1] + 1]
        if self.transform is not None:
            speech = self.transform(speech, sample_rate=self.sample_rate)
        room = len(clip) - len(speech)
        if room < 0:
            return clip                    # would not fit without cutting speech: keep the clip
        start = 0
        if self.config.shift and random.random() < self.config.probability:
            start = random.randint(0, min(room, int(self.config.shift * self.sample_rate)))
        out = np.zeros_like(clip)
        peak = np.abs(speech).max()
        out[start:start + len(speech)] = speech / peak if peak > 1 else speech    # within [-1, 1]
        return out
