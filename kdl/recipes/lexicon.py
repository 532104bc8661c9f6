"""Lexicon-constrained CTC decoding: a beam search (pyctcdecode's, on numpy, so the same on every
backend for the same log-probabilities) that only ever emits words of a vocabulary, optionally
ranked by an n-gram language model.

The vocabulary (the lexicon) is, in this order: a word list file (`--words`, one or more words a
line), the unigrams of an ARPA n-gram language model (`--lm`; the text format KenLM's `lmplz`
writes), or the words of the run's training transcripts (`words.txt` in the run directory).

>>> import numpy as np
>>> characters = " enot"                 # ids 1..5; 0 is the CTC blank
>>> frames = [1 + characters.index(c) if c != "_" else 0 for c in "oo_nn_t"]    # greedy: "ont"
>>> log_probs = np.log(np.full((1, len(frames), 6), 0.02))
>>> log_probs[0, np.arange(len(frames)), frames] = np.log(0.6)
>>> log_probs[0, 6, 1 + characters.index("e")] = np.log(0.3)                  # "one" is second best
>>> LexiconDecoder(characters, ["one", "ten"]).decode(log_probs)
['one']
"""

import logging
import math
import pathlib

from kdl.errors import ConfigError, DataError

OUTSIDE = -1e4      # the score of a word, or a word's beginning, outside the lexicon: such beams drop out
ARPA_HELP = ("an ARPA n-gram language model (text: '\\data\\', 'ngram N=count' lines, '\\N-grams:' "
             "sections, '\\end\\'; what KenLM's lmplz writes)")
SENTENCE_MARKS = {"<s>", "</s>", "<unk>"}


def read_words(path):
    """The words of a word list file: every whitespace-separated word of every line, in order,
    without repeats. An empty list is a DataError."""
    path = pathlib.Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the word list {str(path)!r}: {error}; expected a UTF-8 text file, "
                        "one or more words a line") from None
    words = list(dict.fromkeys(text.split()))
    if not words:
        raise DataError(f"the word list {str(path)!r} has no words; expected a UTF-8 text file, one or more "
                        "words a line")
    return words


class NgramModel:
    """A back-off n-gram model read from an ARPA file: log10 probabilities and back-off weights."""

    def __init__(self, grams, order, path):
        self.grams, self.order, self.path = grams, order, path     # (words...) -> (log10 p, log10 back-off)
        self.unknown = grams.get(("<unk>",), (-10.0, 0.0))[0]

    @property
    def words(self):
        """The model's unigrams, without <s>, </s> and <unk>, sorted."""
        return sorted(key[0] for key in self.grams if len(key) == 1 and key[0] not in SENTENCE_MARKS)

    def log10(self, context, word):
        """log10 P(word | context), backing off to shorter contexts."""
        context, backoff = tuple(context)[len(context) - self.order + 1:] if self.order > 1 else (), 0.0
        while True:
            found = self.grams.get((*context, word))
            if found is not None:
                return backoff + found[0]
            if not context:
                return backoff + self.unknown
            backoff += self.grams.get(context, (0.0, 0.0))[1]
            context = context[1:]


def read_arpa(path):
    """An NgramModel from an ARPA file; a DataError naming the file (and line) if it is not one."""
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read the language model {str(path)!r}: {error.strerror or error}") from None
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path} is not {ARPA_HELP}: it is not text (a KenLM binary file? kdl reads the ARPA "
                        "text that lmplz writes)") from None

    def bad(number, expected):
        got = lines[number - 1][:60] if 0 < number <= len(lines) else "the end of the file"
        return DataError(f"{path}, line {number}: expected {expected}, got {got!r}; the file is not "
                         f"{ARPA_HELP}")

    rows = iter(enumerate(lines, start=1))
    number, line = next(((n, t) for n, t in rows if t.strip()), (len(lines) + 1, ""))
    if line.strip() != "\\data\\":
        raise bad(number, "'\\data\\' (the header of an ARPA file)")
    counts = {}
    for number, line in rows:
        if not line.strip():
            if counts:
                break
            continue
        head, _, count = line.strip().partition("=")
        if not (head.startswith("ngram ") and head[6:].strip().isdigit() and count.strip().isdigit()):
            raise bad(number, "'ngram N=count'")
        counts[int(head[6:])] = int(count)
    if not counts or sorted(counts) != list(range(1, max(counts) + 1)) or 0 in counts.values():
        raise bad(number, "'ngram 1=count', 'ngram 2=count', ... for every order from 1 (counts above 0)")
    grams, order, seen = {}, None, 0
    for number, line in rows:
        text = line.strip()
        if not text:
            continue
        if text.startswith("\\"):
            if order is not None and seen != counts[order]:
                raise bad(number, f"{counts[order]} {order}-grams (as the header says) before this line; "
                                  f"found {seen}")
            if text == "\\end\\":
                if order != max(counts):
                    raise bad(number, f"the '\\{(order or 0) + 1}-grams:' section")
                return NgramModel(grams, max(counts), path)
            expected = (order or 0) + 1
            if text != f"\\{expected}-grams:":
                raise bad(number, f"'\\{expected}-grams:'")
            order, seen = expected, 0
            continue
        fields = text.split()
        if order is None or len(fields) not in (order + 1, order + 2):
            raise bad(number, f"'log10-probability {' '.join(['word'] * (order or 1))} [back-off]'")
        try:
            values = [float(fields[0])] + [float(v) for v in fields[order + 1:]]
        except ValueError:
            raise bad(number, "numbers for the log10 probability and back-off") from None
        grams[tuple(fields[1:order + 1])] = (values[0], values[1] if len(values) > 1 else 0.0)
        seen += 1
    raise bad(len(lines) + 1, "'\\end\\' (the last line of an ARPA file)")


def _language_model_class():
    from pyctcdecode.language_model import AbstractLanguageModel

    class LexiconLanguageModel(AbstractLanguageModel):
        """The lexicon constraint, plugged in where pyctcdecode takes a language model.

        Why a language model class: pyctcdecode reads its `unigrams` list only inside its KenLM-backed
        `LanguageModel` (to penalise, not forbid, unknown words by `unk_score_offset`); built without
        a KenLM model it has no language model at all and ranks beams by the acoustic score alone,
        so a misspelling such as "thre e" wins whenever the acoustics prefer it. Its decoder calls
        the language model at exactly two points: `score_partial_token` for the word being spelt,
        every frame, and `score` for each finished word (and at the end). Here both give 0 to a
        lexicon word (or the beginning of one, looked up in a character trie) and OUTSIDE to any
        other, so a beam spelling anything else falls behind every beam that spells words and is
        pruned. With an n-gram model a lexicon word scores `alpha * ln P(word | history) + beta`.
        """

        def __init__(self, words, ngram=None, alpha=0.5, beta=1.0):
            from pygtrie import CharTrie

            self.words, self.ngram, self.alpha, self.beta = frozenset(words), ngram, alpha, beta
            self.trie = CharTrie.fromkeys(self.words)

        @property
        def order(self):
            return self.ngram.order if self.ngram is not None else 1

        def get_start_state(self):
            return ("<s>",) if self.ngram is not None and ("<s>",) in self.ngram.grams else ()

        def score_partial_token(self, partial_token):
            return 0.0 if self.trie.has_node(partial_token) else OUTSIDE

        def score(self, prev_state, word, is_last_word=False):
            if word and word not in self.words:
                return OUTSIDE, prev_state
            if self.ngram is None:
                return 0.0, prev_state
            state, log10 = prev_state, 0.0
            if word:
                log10 = self.ngram.log10(state, word)
                state = (*state, word)[-(self.order - 1):] if self.order > 1 else ()
            if is_last_word:
                log10 += self.ngram.log10(state, "</s>")
            return self.alpha * log10 * math.log(10) + (self.beta if word else 0.0), state

    return LexiconLanguageModel


class LexiconDecoder:
    """CTC beam search over `characters` (id i + 1; id 0 the blank) that emits only `words`.

    words: the lexicon (None: the n-gram model's words); ngram: an NgramModel to rank word
    sequences (alpha: its weight, beta: a bonus per word), or None for the lexicon alone.
    """

    def __init__(self, characters, words=None, ngram=None, beam_width=16, alpha=0.5, beta=1.0):
        logging.getLogger("pyctcdecode").setLevel(logging.ERROR)   # its import warns that KenLM is absent
        try:
            from pyctcdecode.alphabet import Alphabet
            from pyctcdecode.decoder import BeamSearchDecoderCTC
        except ImportError:
            raise ConfigError("the lexicon decoder needs pyctcdecode: pip install --no-deps "
                              "pyctcdecode==0.5.0 pygtrie (its numpy<2 pin is stale; `make install` does "
                              "this)") from None
        from_model = words is None
        words = list(words) if words is not None else ngram.words
        known = set(characters) - {" "}
        unspellable = [word for word in words if not set(word) <= known]
        if from_model:      # the LM's words the model cannot spell are left out
            words = [word for word in words if set(word) <= known]
        elif unspellable:
            raise DataError(f"lexicon words {unspellable[:5]} have characters outside the model's vocabulary "
                            f"{characters!r}; the model can never spell them")
        if not words:
            raise DataError(f"the lexicon has no word the model can spell with {characters!r}")
        self.words, self.beam_width = frozenset(words), beam_width
        model = _language_model_class()(words, ngram, alpha, beta)
        # Alphabet directly, not build_alphabet: that would rename "_", "|" or "<pad>" characters
        self._decoder = BeamSearchDecoderCTC(Alphabet(["", *characters], False), model)

    def __del__(self):
        decoder = getattr(self, "_decoder", None)
        if decoder is not None:
            decoder.cleanup()      # pyctcdecode keeps each language model in a class-level dict

    def decode(self, log_probs):
        """One transcript per (frames, characters + 1) row of log-probabilities: the best beam whose
        words are all lexicon words (a wider search if the first finds none; "" if neither does)."""
        import numpy as np

        texts = []
        for row in np.asarray(log_probs, np.float64):
            text = self._best(row, {})
            if text is None:     # every beam left spells some other word: search every character, every frame
                text = self._best(row, dict(token_min_logp=-math.inf, beam_prune_logp=-math.inf))
            texts.append(text or "")
        return texts

    def _best(self, row, options):
        beams = self._decoder.decode_beams(row, beam_width=self.beam_width, **options)
        return next((text for text, *_ in beams if set(text.split()) <= self.words), None)
