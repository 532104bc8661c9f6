"""The shared translation scorer: sacrebleu's corpus BLEU and chrF on raw strings, example rows,
JSON round trip, and clear errors for mismatched input."""

import pytest
import sacrebleu

from kdl.errors import DataError
from kdl.evaluation import Report, TranslationReport, translation

REFERENCES = ["Ein Hund rennt über die Wiese.", "Zwei Katzen schlafen auf dem Sofa.", "Ein Mann liest."]
HYPOTHESES = ["Ein Hund läuft über die Wiese.", "Zwei Katzen schlafen.", "Ein Mann liest."]


def test_scores_are_sacrebleu_corpus_scores():
    report = translation(HYPOTHESES, REFERENCES, sources=["a", "b", "c"], examples=2)
    assert isinstance(report, TranslationReport)
    assert report["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score)
    assert report["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score)
    assert 0 < report["bleu"] < 100 and 0 < report["chrf"] < 100
    assert report.examples == [{"source": "a", "reference": REFERENCES[0], "translation": HYPOTHESES[0]},
                               {"source": "b", "reference": REFERENCES[1], "translation": HYPOTHESES[1]}]
    assert report.meta["num_examples"] == 3 and "13a" in report.meta["bleu_signature"]


def test_perfect_and_cased_scoring():
    assert translation(REFERENCES, REFERENCES)["bleu"] == pytest.approx(100)
    lowered = translation([text.lower() for text in REFERENCES], REFERENCES)
    assert lowered["bleu"] < 100        # scored cased: lower-cased output loses points


def test_report_prints_and_round_trips():
    report = translation(HYPOTHESES, REFERENCES, sources=["a", "b", "c"])
    text = str(report)
    assert text.startswith("translation report (3 examples)") and "Zwei Katzen schlafen." in text
    assert "| bleu |" in report.to_markdown()
    again = Report.from_json(report.to_json())
    assert isinstance(again, TranslationReport) and again == report


def test_mismatched_input_is_a_clear_error():
    with pytest.raises(DataError, match="got 2 hypotheses and 3 references"):
        translation(HYPOTHESES[:2], REFERENCES)
    with pytest.raises(DataError, match=r"hypotheses\[1\] is int"):
        translation(["a", 3, "c"], REFERENCES)
    with pytest.raises(DataError, match="got 1 sources for 3 references"):
        translation(HYPOTHESES, REFERENCES, sources=["a"])
