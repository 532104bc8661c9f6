"""Task models whose backbone is a keras-hub preset: the preset's weights and its own
preprocessing, with kdl's inputs and head around them (`model.backbone = "hub:NAME"` or a folder).

A preset is a keras-hub name ("resnet_18_imagenet", "bert_tiny_en_uncased", a "kaggle://" or
"hf://" handle), which keras-hub downloads on a machine connected to the internet, or a local
folder that keras-hub's `save_to_preset` wrote (config.json, metadata.json, model.weights.h5 and
the preprocessing's files: image_converter.json, tokenizer.json and its vocabulary). Everything
is read by keras-hub's own `from_preset`; every way that can fail (no such folder, a folder that
is not a preset, a preset of the other modality, no network) is one ConfigError line.

- `image_classifier`: images (B, H, W, C), pixel values 0..255 -> grey to RGB when the backbone
  takes RGB -> kdl's augmentation (training only) -> what the preset's `ImageConverter` does
  (resize to its image size, its scale and offset), as core Keras layers -> backbone -> global
  average pool -> softmax.
- `text_classifier`: token ids (B, L), 0 for padding -> the backbone (segment ids 0, padding
  mask from the ids) -> masked mean of its sequence output -> dropout -> softmax; `tokenizer` is
  the kdl.data.Tokenizer of the preset's WordPiece vocabulary (BERT, DistilBERT, ELECTRA).
- `audio_classifier`: waveforms (B, samples) at 16 kHz -> a Moonshine preset's encoder (it
  reads raw audio itself) -> mean over its frames -> softmax.

The preprocessing is layers of the model, so a saved model.keras holds all of it: loading,
predicting and exporting it need neither the preset nor a network.

>>> model = image_classifier("presets/resnet_tiny", (32, 32, 3), num_classes=10)   # doctest: +SKIP
>>> model.get_layer("probabilities").units                                         # doctest: +SKIP
10
"""

import difflib
import os
import pathlib
import re

import keras
import numpy as np
from keras import layers, ops

from kdl.errors import ConfigError, KdlError, warn
from kdl.models.image.augment import augmentation
from kdl.models.text.backbones import masked_mean

PRESET_FILES = ("config.json", "metadata.json")     # what every keras-hub preset folder holds
WORDPIECE_PRESETS = "BERT, DistilBERT or ELECTRA"    # text presets whose vocabulary kdl's Tokenizer reads
TEXT_INPUTS = ("token_ids", "segment_ids", "padding_mask")   # what a text backbone may take
DOWNLOADING = ("requests", "urllib3", "kagglehub", "kagglesdk", "huggingface_hub", "http", "socket")


# --- finding and loading a preset ------------------------------------------------------------

def check(preset):
    """The keras-hub handle of `preset`: a local folder that exists and holds a preset's
    config.json and metadata.json, a built-in keras-hub preset name, or a "kaggle://" / "hf://"
    handle; a ConfigError naming it otherwise (nothing is downloaded here)."""
    if not isinstance(preset, (str, os.PathLike)) or not os.fspath(preset):
        raise ConfigError(f"a keras-hub preset is a name or a folder; got {type(preset).__name__} {preset!r}")
    preset = os.fspath(preset)
    if is_local(preset):
        folder = pathlib.Path(preset).expanduser()
        if not folder.exists():
            raise ConfigError(f"no keras-hub preset folder {str(folder)!r}: it does not exist")
        if not folder.is_dir():
            raise ConfigError(f"{str(folder)!r} is a file, not a keras-hub preset folder")
        missing = [name for name in PRESET_FILES if not (folder / name).is_file()]
        if missing:
            raise ConfigError(f"{str(folder)!r} is not a keras-hub preset folder: it has no "
                              f"{' or '.join(missing)} (a preset folder is what keras-hub's "
                              "save_to_preset writes: config.json, metadata.json, model.weights.h5 "
                              "and the files of its preprocessing)")
        return str(folder)
    known = _builtin_presets()
    if "://" not in preset and known and preset not in known:
        close = difflib.get_close_matches(preset, known, n=3)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise ConfigError(f"no keras-hub preset named {preset!r}{hint}; give a keras-hub preset name "
                          '(e.g. "resnet_18_imagenet", "bert_tiny_en_uncased"), a "kaggle://" or '
                          '"hf://" handle, or a local preset folder')
    return preset


def is_local(preset):
    """Whether `preset` names a local folder rather than something keras-hub downloads."""
    preset = os.fspath(preset)
    return "://" not in preset and (os.path.exists(preset) or "/" in preset or os.sep in preset
                                    or preset.startswith((".", "~")))


def backbone_class(preset):
    """The keras-hub Backbone class a (checked) preset holds, read from its config.json alone:
    no weights are read or downloaded. None when this keras-hub has no such reader (the class
    is then checked once the backbone is loaded)."""
    try:
        from keras_hub.src.utils.preset_utils import get_preset_loader
    except ImportError:
        return None
    return _hub(preset, "config.json", lambda: get_preset_loader(preset).check_backbone_class())


def modalities(cls):
    """The inputs a keras-hub Backbone class takes, from the preprocessing layers keras-hub
    registers for it: a subset of {"image", "audio", "text"} (empty: none registered)."""
    import keras_hub

    bases = {"image": keras_hub.layers.ImageConverter, "audio": keras_hub.layers.AudioConverter,
             "text": keras_hub.tokenizers.Tokenizer}
    registered = [obj for obj in set(keras.saving.get_custom_objects().values()) if isinstance(obj, type)]
    return {kind for kind, base in bases.items()
            if any(issubclass(obj, base) and getattr(obj, "backbone_cls", None) is cls for obj in registered)}


def load_backbone(preset, kind, task, examples):
    """The preset's backbone with its weights, after checking (on config.json alone) that it is
    a `kind` backbone; a ConfigError naming the backbone class otherwise."""
    import keras_hub

    preset = check(preset)
    checked = require(preset, kind, task, examples)
    backbone = _hub(preset, "backbone", lambda: keras_hub.models.Backbone.from_preset(preset))
    if checked is None:
        require(preset, kind, task, examples, type(backbone))
    return backbone


def require(preset, kind, task, examples, cls=None):
    """The preset's backbone class (None if unknown before loading it); a ConfigError when it
    takes other inputs than `kind` alone (an audio backbone may also have a tokenizer: a
    speech-to-text model's encoder serves)."""
    cls = cls or backbone_class(preset)
    if cls is None:
        return None
    found = modalities(cls)
    if found and found != {kind} and not (kind == "audio" and found == {"audio", "text"}):
        what = " and ".join(sorted(found))
        article = "an" if task[0] in "aeiou" else "a"
        raise ConfigError(f"the keras-hub preset {preset!r} holds a {cls.__name__}, a backbone for "
                          f"{what} inputs; {article} {task} needs one for {kind} inputs alone ({examples})")
    return cls


def _hub(preset, what, load):
    """`load()`, with whatever keras-hub (or the download under it) raises as one ConfigError line."""
    try:
        return load()
    except KdlError:
        raise
    except Exception as error:      # keras-hub and the downloaders raise many kinds: never a traceback
        message = _line(error)
        missing = isinstance(error, FileNotFoundError)    # for a download: a 404, or no network (HF)
        if not is_local(preset) and _is_download_error(error) and (what == "config.json" or not missing):
            raise ConfigError(
                f"cannot download the keras-hub preset {preset!r} here ({type(error).__name__}: "
                f"{message}); downloading a preset needs a machine connected to the internet "
                "(Kaggle or Hugging Face). Run there, or give a local preset folder as model.backbone "
                "(one that keras-hub's save_to_preset wrote, or a downloaded preset copied here)") from None
        if missing:
            raise ConfigError(f"the keras-hub preset {preset!r} has no {what}: {message}") from None
        raise ConfigError(f"cannot load the {what} of the keras-hub preset {preset!r}: "
                          f"{type(error).__name__}: {message}") from None


def _is_download_error(error):
    """An error of fetching files (no network, a refused or missing download), not of their content."""
    module = type(error).__module__.split(".")[0]
    return isinstance(error, (OSError, ImportError, TimeoutError)) or module in DOWNLOADING


def _line(error):
    """The first line of an error's message, cut to a readable length."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0][:300] + ("..." if len(lines[0]) > 300 or len(lines) > 1 else "")


def _builtin_presets():
    """The names of keras-hub's built-in presets (empty if this keras-hub does not list them)."""
    try:
        from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

        return sorted(BUILTIN_PRESETS)
    except ImportError:
        return []


def _model_name(task, cls):
    """A Keras model name from the backbone class: "image_classifier_res_net_backbone"."""
    return f"{task}_" + re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def _building(preset, task, build):
    """`build()`; a Keras error while wiring the model (a backbone kdl cannot feed) as a ConfigError."""
    try:
        return build()
    except KdlError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"cannot build a {task} on the keras-hub preset {preset!r}: "
                          f"{_line(error)}") from None


# --- images ------------------------------------------------------------------------------------

IMAGE_PRESETS = "an image backbone preset such as ResNet, EfficientNet, MobileNet, DenseNet or ViT"


def image_converter(preset):
    """The preset's keras-hub ImageConverter (its resizing, scale and offset), or None when the
    preset has none (a folder holding only a backbone)."""
    import keras_hub

    def load():
        try:
            return keras_hub.layers.ImageConverter.from_preset(preset)
        except FileNotFoundError:      # no image_converter.json
            return None
        except ValueError as error:    # no ImageConverter class for this backbone
            if "Unable to find a subclass" in str(error):
                return None
            raise

    return _hub(preset, "image converter", load)


def image_classifier(preset, input_shape, num_classes, augment=(), seed=None):
    """Images (B, H, W, C), 0..255 -> the preset's preprocessing and backbone -> (B, num_classes).

    `input_shape` is the data's (H, W, C); H and W may differ from the preset's image size (its
    converter resizes). Grey (C = 1) is repeated to RGB and RGBA loses its alpha when the
    backbone takes 3 channels. `augment` (kdl.models.image.augment names) acts on the pixels
    0..255, before the preset's normalisation (RandomContrast clips to 0..255)."""
    preset = check(preset)
    backbone = load_backbone(preset, "image", "image classifier", IMAGE_PRESETS)
    cls = type(backbone)
    if not isinstance(backbone.input, keras.KerasTensor) or len(backbone.input.shape) != 4:
        raise ConfigError(f"the keras-hub preset {preset!r} holds a {cls.__name__}, which does not take "
                          f"one batch of images (B, H, W, C); an image classifier needs {IMAGE_PRESETS}")
    converter = image_converter(preset)
    if converter is None:
        warn(f"the keras-hub preset {preset!r} has no image converter (image_converter.json): its "
             "images' size and normalisation are unknown, so kdl scales pixels to 0..1 and keeps their "
             "size; save the preset's ImageConverter into the folder to use its own")

    def build():
        height, width, channels = backbone.input.shape[1:]
        inputs = keras.Input(shape=tuple(input_shape), name="images")        # (B, H, W, C), 0..255
        x = _channels(inputs, channels, preset, cls)                          # (B, H, W, channels)
        if augment:     # training=False unless fit says True: off in a bare model(x) (an export)
            x = augmentation(augment, seed)(x, training=False)                # (B, H, W, channels)
        x = preprocessing(converter, x)                   # (B, h, w, channels): resized, normalised
        if height and width and tuple(x.shape[1:3]) != (height, width):      # a fixed-size backbone
            x = layers.Resizing(height, width, name="backbone_size")(x, training=False)
        features = backbone(x)                        # (B, h', w', F), or (B, tokens, F) for a ViT
        if isinstance(features, dict) or len(features.shape) not in (2, 3, 4):
            raise ConfigError(f"the keras-hub preset {preset!r} holds a {cls.__name__}, whose output "
                              "is not one feature map; an image classifier needs " + IMAGE_PRESETS)
        pool = {4: layers.GlobalAveragePooling2D, 3: layers.GlobalAveragePooling1D}.get(len(features.shape))
        x = pool(name="pool")(features) if pool else features                # (B, F)
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                               name="probabilities")(x)                       # (B, num_classes)
        return keras.Model(inputs, outputs, name=_model_name("image_classifier", cls))

    return _building(preset, "image classifier", build)


def preprocessing(converter, x):
    """x (B, H, W, C), 0..255, through what the keras-hub ImageConverter `converter` does: resize
    to its image size (its interpolation, crop or pad to the aspect ratio), then x * scale +
    offset (per channel or global), as core Keras layers, which every backend runs and every
    exporter converts; a converter class with its own `call` is used as it is. No converter:
    pixels / 255.

    The Resizing layer is called with training=False (fit still passes True): Keras' image
    preprocessing layers default to training=True and hand that on to the layers after them
    when a model is called without `training` (an export), which would put the backbone's
    BatchNormalization in training mode."""
    import keras_hub

    base = keras_hub.layers.ImageConverter
    if converter is None:
        return layers.Rescaling(1 / 255, name="rescaling")(x)                 # (B, H, W, C), 0..1
    if type(converter).call is not base.call or type(converter)._call_python is not base._call_python:
        return converter(x)                                                   # its own preprocessing
    if converter.image_size is not None:
        x = layers.Resizing(*converter.image_size, interpolation=converter.interpolation,
                            crop_to_aspect_ratio=converter.crop_to_aspect_ratio,
                            pad_to_aspect_ratio=converter.pad_to_aspect_ratio,
                            antialias=converter.antialias, name="resizing")(x, training=False)
    if converter.scale is not None or converter.offset is not None:
        scale = 1.0 if converter.scale is None else converter.scale
        offset = 0.0 if converter.offset is None else converter.offset
        x = layers.Rescaling(_plain(scale), _plain(offset), name="rescaling")(x)   # (B, h, w, C)
    return x


def _plain(value):
    """A converter's scale or offset as a float or a list of floats (what a layer config holds)."""
    values = np.asarray(value, dtype="float64")
    return float(values) if values.ndim == 0 else values.ravel().tolist()


def _channels(x, channels, preset, cls):
    """x (B, H, W, C) made to the backbone's `channels` as kdl.data.conform_pixels does: grey
    repeated to RGB, RGBA's alpha dropped."""
    have = x.shape[-1]
    if channels is None or have == channels:
        return x
    if channels == 3 and have == 1:
        return layers.Concatenate(name="grey_to_rgb")([x, x, x])             # (B, H, W, 3)
    if channels == 3 and have == 4:
        return x[..., :3]                                                     # (B, H, W, 3)
    raise ConfigError(f"the keras-hub preset {preset!r} holds a {cls.__name__} that takes {channels}-channel "
                      f"images, but these images have {have}; give it images with {channels} channels")


# --- text --------------------------------------------------------------------------------------

TEXT_PRESETS = f"a {WORDPIECE_PRESETS} preset, whose WordPiece vocabulary kdl's tokenizer reads"


def tokenizer(preset, max_length=64):
    """The kdl.data.Tokenizer of the preset's WordPiece vocabulary (id 0 is its padding token);
    it lower-cases, as the uncased presets do (a warning says so for a cased preset)."""
    import keras_hub

    from kdl.data import Tokenizer

    preset = check(preset)
    require(preset, "text", "text classifier", TEXT_PRESETS)
    hub = _hub(preset, "tokenizer", lambda: keras_hub.tokenizers.Tokenizer.from_preset(preset))
    if not isinstance(hub, keras_hub.tokenizers.WordPieceTokenizer):
        raise ConfigError(f"the keras-hub preset {preset!r} has a {type(hub).__name__}; kdl's text "
                          f"classifier reads WordPiece vocabularies ({WORDPIECE_PRESETS} presets)")
    vocabulary = hub.get_vocabulary()
    padding = getattr(hub, "pad_token_id", 0)
    if padding not in (None, 0):
        raise ConfigError(f"the keras-hub preset {preset!r} pads with token id {padding}; kdl's text "
                          "models take id 0 as padding")
    if not getattr(hub, "lowercase", True):
        warn(f"the keras-hub preset {preset!r} is cased, but kdl's tokenizer lower-cases: words the "
             "vocabulary knows only capitalised become pieces or [UNK]; an uncased preset fits better")
    return Tokenizer(vocabulary, kind="wordpiece", max_length=max_length)


def text_classifier(preset, max_length, num_classes, vocabulary_size=None):
    """Token ids (B, max_length), 0 for padding -> the preset's backbone -> (B, num_classes).

    `vocabulary_size` (the tokenizer's) must be the backbone's, so that every id has its embedding."""
    preset = check(preset)
    backbone = load_backbone(preset, "text", "text classifier", TEXT_PRESETS)
    cls = type(backbone)
    names = list(backbone.input) if isinstance(backbone.input, dict) else []
    if "token_ids" not in names or set(names) - set(TEXT_INPUTS):
        raise ConfigError(f"the keras-hub preset {preset!r} holds a {cls.__name__} that takes "
                          f"{', '.join(names) or 'one tensor'}; kdl's text classifier feeds "
                          f"{', '.join(TEXT_INPUTS)} ({TEXT_PRESETS})")
    longest = getattr(backbone, "max_sequence_length", None)
    if longest and max_length > longest:
        raise ConfigError(f"data.max_length = {max_length} is longer than the keras-hub preset {preset!r} "
                          f"takes ({cls.__name__} max_sequence_length {longest}); set data.max_length "
                          f"to at most {longest}")
    embedded = getattr(backbone, "vocabulary_size", None)
    if vocabulary_size is not None and embedded is not None and vocabulary_size != embedded:
        raise ConfigError(f"the tokenizer makes {vocabulary_size} token ids but the keras-hub preset "
                          f"{preset!r} embeds {embedded}; the tokenizer must be the preset's own")

    def build():
        token_ids = keras.Input(shape=(max_length,), dtype="int32", name="token_ids")   # (B, L)
        feed = {"token_ids": token_ids,
                "segment_ids": ops.zeros_like(token_ids),                              # (B, L)
                "padding_mask": ops.not_equal(token_ids, 0)}                            # (B, L)
        outputs = backbone({name: feed[name] for name in names})
        sequence = outputs.get("sequence_output") if isinstance(outputs, dict) else outputs
        if sequence is None or len(sequence.shape) != 3:
            raise ConfigError(f"the keras-hub preset {preset!r} holds a {cls.__name__} without a "
                              f"sequence output (B, L, D); kdl's text classifier needs {TEXT_PRESETS}")
        x = masked_mean(sequence, token_ids)                                  # (B, hidden)
        x = layers.Dropout(getattr(backbone, "dropout", 0.1) or 0.0)(x)
        probabilities = layers.Dense(num_classes, activation="softmax", dtype="float32",
                                     name="probabilities")(x)                 # (B, num_classes)
        return keras.Model(token_ids, probabilities, name=_model_name("text_classifier", cls))

    return _building(preset, "text classifier", build)


# --- audio -------------------------------------------------------------------------------------

AUDIO_PRESETS = "a Moonshine preset (moonshine_tiny_en, moonshine_base_en), whose encoder reads raw audio"
MOONSHINE_INPUTS = ("encoder_input_values", "encoder_padding_mask", "decoder_token_ids",
                    "decoder_padding_mask")


def audio_classifier(preset, num_samples, num_classes, sample_rate):
    """Waveforms (B, num_samples), -1..1 at `sample_rate` -> a Moonshine preset's encoder ->
    mean over its frames -> (B, num_classes).

    Moonshine's encoder starts with its own convolutions over the raw waveform, so the model
    needs no features of kdl's; its audio converter's only step, a per-clip normalisation to
    zero mean and unit variance (when the preset sets `do_normalize`), is done inside the model.
    The decoder of the encoder-decoder backbone is fed one padding token and its output is
    unused (its weights are frozen). Whisper does not fit: its log-mel converter is TensorFlow
    code (tf.signal.stft) that cannot run inside a model on JAX or PyTorch."""
    import keras_hub

    preset = check(preset)
    backbone = load_backbone(preset, "audio", "audio classifier", AUDIO_PRESETS)
    cls = type(backbone)
    names = list(backbone.input) if isinstance(backbone.input, dict) else []
    if sorted(names) != sorted(MOONSHINE_INPUTS):
        raise ConfigError(f"the keras-hub preset {preset!r} holds a {cls.__name__}; kdl's audio classifier "
                          f"takes {AUDIO_PRESETS}")
    converter = _hub(preset, "audio converter",
                     lambda: keras_hub.layers.AudioConverter.from_preset(preset))
    rate = getattr(converter, "sampling_rate", None)
    if rate and rate != sample_rate:
        raise ConfigError(f"the keras-hub preset {preset!r} takes audio at {rate} Hz but data.sample_rate "
                          f"is {sample_rate}; set data.sample_rate = {rate}")
    for layer in backbone.layers:            # the decoder gets no gradient: keep its weights as they are
        if layer.name.startswith(("decoder", "token_embedding")):
            layer.trainable = False

    def build():
        waveforms = keras.Input(shape=(num_samples,), name="waveforms")       # (B, S), -1..1
        x = ops.expand_dims(waveforms, -1)                                      # (B, S, 1)
        if getattr(converter, "do_normalize", False):
            mean = ops.mean(x, axis=1, keepdims=True)                          # (B, 1, 1)
            x = (x - mean) / ops.sqrt(ops.var(x, axis=1, keepdims=True) + 1e-7)   # (B, S, 1)
        one = ops.ones_like(waveforms[:, :1], dtype="int32")                   # (B, 1)
        outputs = backbone({"encoder_input_values": x,
                            "encoder_padding_mask": ops.ones_like(waveforms, dtype="bool"),  # (B, S)
                            "decoder_token_ids": one * 0,                                # (B, 1)
                            "decoder_padding_mask": ops.cast(one, "bool")})              # (B, 1)
        x = layers.GlobalAveragePooling1D(name="pool")(outputs["encoder_sequence_output"])   # (B, D)
        probabilities = layers.Dense(num_classes, activation="softmax", dtype="float32",
                                     name="probabilities")(x)                 # (B, num_classes)
        return keras.Model(waveforms, probabilities, name=_model_name("audio_classifier", cls))

    return _building(preset, "audio classifier", build)
