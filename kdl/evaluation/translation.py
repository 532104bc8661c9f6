"""Score translations: detokenised output strings against the raw reference strings.

BLEU and chrF come from sacrebleu (corpus level, its default 13a tokenisation, cased), so the
numbers compare with published ones; nothing is re-implemented here. The report also keeps a
handful of example translations.

>>> report = translation(["Ein Hund läuft.", "Zwei Katzen schlafen."],
...                      ["Ein Hund läuft.", "Zwei Katzen schlafen auf dem Sofa."],
...                      sources=["A dog runs.", "Two cats sleep on the sofa."])
>>> round(report["bleu"], 1), round(report["chrf"], 1)
(51.4, 74.5)
>>> report.examples[0]["translation"]
'Ein Hund läuft.'
"""

import dataclasses

from kdl.errors import DataError
from kdl.evaluation.report import Report, check_paired_texts

NUM_EXAMPLES = 5


@dataclasses.dataclass(eq=False)
class TranslationReport(Report, task="translation"):
    """A `Report` with "bleu" and "chrf" (0-100) and an "examples" table (source, reference, translation)."""

    task: str = "translation"

    @property
    def examples(self):
        return self.tables.get("examples", [])


def translation(hypotheses, references, *, sources=None, examples=NUM_EXAMPLES):
    """Corpus BLEU and chrF of `hypotheses` (one string per sentence) against `references`.

    sources: the input sentences, shown beside the first `examples` translations.
    """
    import sacrebleu

    hypotheses, references = check_paired_texts("translation()", "hypotheses", hypotheses,
                                                "references", references)
    if sources is not None and len(sources) != len(references):
        raise DataError(f"got {len(sources)} sources for {len(references)} references")
    bleu_metric, chrf_metric = sacrebleu.BLEU(), sacrebleu.CHRF()
    bleu = bleu_metric.corpus_score(hypotheses, [references])
    chrf = chrf_metric.corpus_score(hypotheses, [references])
    rows = [{**({"source": sources[i]} if sources is not None else {}),
             "reference": references[i], "translation": hypotheses[i]}
            for i in range(min(examples, len(references)))]
    return TranslationReport(
        metrics={"bleu": bleu.score, "chrf": chrf.score},
        tables={"examples": rows},
        meta={"num_examples": len(references), "bleu_signature": str(bleu_metric.get_signature()),
              "chrf_signature": str(chrf_metric.get_signature()), "bleu_detail": str(bleu)})
