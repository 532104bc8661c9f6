"""Score a speech recogniser from strings: reference transcripts and the model's hypotheses.

Word and character error rates come from jiwer (the field's reference implementation); the
same code scores every backend's model. The report shows a handful of example transcripts.

>>> report = speech_recognition(["three one four", "nine"], ["three one for", "nine"])
>>> report["wer"], round(report["cer"], 4), report["sentence_accuracy"]
(0.25, 0.0556, 0.5)
>>> print(report)                                        # doctest: +NORMALIZE_WHITESPACE
speech_recognition report (2 examples)
  wer                0.2500
  cer                0.0556
  sentence_accuracy  0.5000
  substitutions      1
  deletions          0
  insertions         0
<BLANKLINE>
examples
  reference       hypothesis     word_errors
  three one four  three one for            1
  nine            nine                     0
"""

import dataclasses

import jiwer

from kdl.errors import DataError
from kdl.evaluation.report import Report, check_paired_texts

EXAMPLES_SHOWN = 8


@dataclasses.dataclass(eq=False)
class SpeechReport(Report, task="speech_recognition"):
    """A `Report` of WER, CER and sentence accuracy, and an "examples" table of a few
    {"reference", "hypothesis", "word_errors"} rows."""

    task: str = "speech_recognition"
    COUNTS = ("substitutions", "deletions", "insertions")   # word counts: ints, also when read from JSON

    def __post_init__(self):
        super().__post_init__()
        for name in self.COUNTS:
            if isinstance(self.metrics.get(name), float) and self.metrics[name].is_integer():
                self.metrics[name] = int(self.metrics[name])   # a report.json written before they were

    @property
    def examples(self):
        return self.tables.get("examples", [])


def speech_recognition(references, hypotheses, shown=EXAMPLES_SHOWN):
    """Score hypotheses against references (lists of strings, one per utterance).

    Metrics: wer and cer (jiwer: errors / reference words or characters, over the whole set),
    sentence_accuracy (exact matches), and the word-level substitution, deletion and insertion
    counts. `shown` examples are kept: the first ones with errors, then correct ones.
    """
    references, hypotheses = check_paired_texts("speech_recognition()", "references", references,
                                                "hypotheses", hypotheses)
    empty = next((i for i, text in enumerate(references) if not text.strip()), None)
    if empty is not None:
        raise DataError(f"references[{empty}] is empty; every reference needs at least one word")
    words = jiwer.process_words(references, hypotheses)
    metrics = {
        "wer": words.wer,
        "cer": jiwer.cer(references, hypotheses),
        "sentence_accuracy": sum(r == h for r, h in zip(references, hypotheses)) / len(references),
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
    }
    errors = [sum(chunk.ref_end_idx - chunk.ref_start_idx if chunk.type != "insert" else
                  chunk.hyp_end_idx - chunk.hyp_start_idx
                  for chunk in alignment if chunk.type != "equal")
              for alignment in words.alignments]
    order = sorted(range(len(references)), key=lambda i: (errors[i] == 0, i))[:shown]
    examples = [{"reference": references[i], "hypothesis": hypotheses[i], "word_errors": errors[i]}
                for i in sorted(order)]
    return SpeechReport(metrics=metrics, tables={"examples": examples},
                        meta={"num_examples": len(references)})
