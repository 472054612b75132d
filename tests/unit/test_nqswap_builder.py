"""The NQ-Swap conflict set builder (issue #34): cleaning, question filter, retrieved distractors, splits."""

from __future__ import annotations

from typing import Any

import pytest

from selfanchor_chains.bench.nqswap_builder import build_nqswap_set, nqswap_questions, plain_passage
from selfanchor_chains.eval.conflict_set import check_record, grade_conflict
from tests.keyword_embeddings import KeywordEmbeddings


def _row(question: str, subject: str, value: str, swapped: str) -> dict[str, Any]:
    return {
        "question": question,
        "org_context": f"<P> The {subject} is led by {value} , as of 2017 . </P>",
        "org_answer": [value],
        "sub_context": f"<P> The {subject} is led by {swapped} , as of 2017 . </P>",
        "sub_answer": [swapped],
    }


ROWS = [
    _row("who leads the river club", "river club", "Ann Lee", "Bo Chan"),
    _row("who leads the river club", "river club", "Ann Lee", "Cy Dorn"),  # a second swap: the first row is kept
    _row("who leads the chess club", "chess club", "Dee Fox", "Eli Gray"),
    _row("who leads the river band", "river band", "Fay Hill", "Gus Ives"),
    _row("who leads the ski team", "ski team", "Hal Jones", "Ida Kim"),
    _row("who leads the choir", "choir", "Jo Lane", "Jo Lane"),  # same answer after the swap: not a conflict
]


def test_passages_lose_markup_and_tokenised_spacing() -> None:
    assert plain_passage("<P> Born in Paris ( France ) , he left . </P>") == "Born in Paris (France), he left."
    assert plain_passage("<Table> <Tr> <Td> a </Td> </Tr> </Table>") == "a"


def test_one_question_per_text_and_only_real_conflicts() -> None:
    questions = nqswap_questions(ROWS, max_words=50)
    assert [q.question for q in questions] == [
        "who leads the river club",
        "who leads the chess club",
        "who leads the river band",
        "who leads the ski team",
    ]
    assert questions[0].substituted_answers == ("Bo Chan",)
    assert nqswap_questions(ROWS, max_words=5) == []  # every passage is longer than five words
    with pytest.raises(ValueError, match="lacks sub_answer"):
        nqswap_questions([{k: v for k, v in ROWS[0].items() if k != "sub_answer"}], max_words=50)


def test_items_are_valid_conflict_records_with_retrieved_distractors() -> None:
    splits = build_nqswap_set(ROWS, splits={"train": (1, 1), "test": (2, 0)}, k=3, seed=1)
    assert [len(records) for records in splits.values()] == [2, 2]
    ids = [r["id"] for records in splits.values() for r in records]
    assert ids == ["nqswap/train/0000", "nqswap/train/0001", "nqswap/test/0000", "nqswap/test/0001"]
    questions = [r["question"] for records in splits.values() for r in records]
    assert len(set(questions)) == 4  # splits never share a question
    for records in splits.values():
        for record in records:
            check_record(record)
            evidence = record["passages"][record["evidence_index"]]
            assert record["context_answer"] in evidence and len(record["passages"]) == 3
            distractors = [p for i, p in enumerate(record["passages"]) if i != record["evidence_index"]]
            # no distractor states this question's answer, original or swapped
            assert not any(a in d for d in distractors for a in (record["context_answer"], record["memory_answer"]))
    conflict = splits["train"][0]
    assert conflict["kind"] == "conflict" and conflict["context_answer"] != conflict["memory_answer"]
    assert grade_conflict(conflict["context_answer"], conflict)["context_fair"]
    assert splits["train"][1]["kind"] == "control"
    river = next(r for records in splits.values() for r in records if r["question"] == "Who leads the river club?")
    # BM25 ranks the other "river" passage first among the distractors
    assert any("river band" in p for p in river["passages"])


def test_dense_retrieval_and_bad_arguments() -> None:
    axes = KeywordEmbeddings(("river", "chess", "ski", "club"))
    splits = build_nqswap_set(ROWS, splits={"test": (4, 0)}, k=2, seed=0, embeddings=axes)
    # cosine in closed form: "river club" is nearest "river band" (0.71 > chess club's 0.5); the others are
    # nearest "river club" (0.5 and 0.71; ski team shares no axis, so the tie goes to the first passage)
    nearest = {
        "Who leads the river club?": "river band",
        "Who leads the chess club?": "river club",
        "Who leads the river band?": "river club",
        "Who leads the ski team?": "river club",
    }
    for record in splits["test"]:
        distractor = record["passages"][1 - record["evidence_index"]]
        assert nearest[record["question"]] in distractor
    with pytest.raises(ValueError, match="k must be"):
        build_nqswap_set(ROWS, splits={"test": (1, 0)}, k=1)
    with pytest.raises(ValueError, match="usable"):
        build_nqswap_set(ROWS, splits={"test": (4, 1)})
