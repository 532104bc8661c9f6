"""kdl.evaluation.speech_recognition: WER and CER from jiwer, sentence accuracy, the example table,
JSON round trip, and clear errors for bad input."""

import jiwer
import pytest

from kdl.errors import DataError
from kdl.evaluation import Report, SpeechReport, speech_recognition

REFERENCES = ["three one four", "one five nine", "two six", "five"]
HYPOTHESES = ["three one for", "one five nine", "two six five", ""]


def test_wer_and_cer_match_jiwer():
    report = speech_recognition(REFERENCES, HYPOTHESES)
    assert report["wer"] == pytest.approx(jiwer.wer(REFERENCES, HYPOTHESES))
    assert report["wer"] == pytest.approx(3 / 9)            # 1 substitution, 1 insertion, 1 deletion
    assert report["cer"] == pytest.approx(jiwer.cer(REFERENCES, HYPOTHESES))
    assert report["sentence_accuracy"] == 0.25
    assert (report["substitutions"], report["insertions"], report["deletions"]) == (1, 1, 1)
    assert report.meta["num_examples"] == 4


def test_word_error_counts_are_integers_printed_as_integers():
    report = speech_recognition(REFERENCES * 51, HYPOTHESES * 51)       # 51 of each error
    assert all(type(report[name]) is int for name in ("substitutions", "deletions", "insertions"))
    lines = str(report).splitlines()
    assert "  deletions          51" in lines and "  wer                0.3333" in lines
    assert "| insertions | 51 |" in report.to_markdown() and "51.0000" not in report.to_markdown()
    assert '"deletions": 51,' in report.to_json()
    older = report.to_dict()                  # a report.json written when counts were floats
    older["metrics"] = {name: float(value) for name, value in older["metrics"].items()}
    assert Report.from_dict(older) == report and type(Report.from_dict(older)["deletions"]) is int


def test_examples_show_errors_first_and_print():
    report = speech_recognition(REFERENCES * 5, HYPOTHESES * 5, shown=3)
    assert [e["reference"] for e in report.examples] == ["three one four", "two six", "five"]
    assert [e["word_errors"] for e in report.examples] == [1, 1, 1]
    text = str(report)
    assert "\nexamples\n  reference       hypothesis     word_errors\n  three one four  three one for" in text
    assert "| three one four | three one for | 1 |" in report.to_markdown()


def test_perfect_transcripts():
    report = speech_recognition(["a b", "c"], ["a b", "c"])
    assert report["wer"] == report["cer"] == 0.0 and report["sentence_accuracy"] == 1.0


def test_json_round_trip():
    report = speech_recognition(REFERENCES, HYPOTHESES)
    again = Report.from_json(report.to_json())
    assert isinstance(again, SpeechReport) and again == report and again.examples == report.examples


@pytest.mark.parametrize("references, hypotheses, message", [
    (["a"], ["a", "b"], "got 1 references and 2 hypotheses"),
    ([], [], "at least one; got 0 references and 0 hypotheses"),
    (["a", ""], ["a", "b"], r"references\[1\] is empty"),
    (["a", "b"], ["a", None], r"hypotheses\[1\] is NoneType"),
])
def test_bad_input(references, hypotheses, message):
    with pytest.raises(DataError, match=message):
        speech_recognition(references, hypotheses)
