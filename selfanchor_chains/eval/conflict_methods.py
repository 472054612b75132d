"""The methods compared on the knowledge-conflict set (:mod:`selfanchor_chains.eval.conflict_set`), on the same items.

All but ``rag-self-anchor`` ask for a short direct answer (one batched decode of at most
:data:`SHORT_ANSWER_TOKENS` tokens); the anchored ones differ from plain RAG only in the anchor markup around the
passages (the model sees the same text) and in ω:

- ``closed-book``: the question alone (what the model answers from memory);
- ``rag-plain``: the passages and the question, ω = 1 (plain decoding);
- ``rag-instructed``: the best prompt-only faithfulness baseline we found, Zhou et al. 2023 ("Context-faithful
  prompting for large language models", arXiv 2303.11315): the opinion-based prompt ("Bob said: …" / "… in Bob's
  opinion?") with their instruction, the combination that scored best in their knowledge-conflict experiments,
  plus an explicit "answer from the passages even if they contradict what you know";
- ``rag-anchored``: the plain-RAG prompt with every passage anchored and ω = :data:`ANCHORED_OMEGA` (context-aware
  decoding, Shi et al. 2023: the masked branch sees no passage, so ω > 1 pushes away from the memorised answer);
- ``rag-anchored-oracle``: only the evidence passage anchored, same ω (an upper bound: it needs to know which
  passage answers);
- ``rag-anchored-top1``: only the passage a retriever ranks first anchored, same ω: the passages are ranked by
  the cosine similarity of their MiniLM embedding to the question's (what a vector store's top-1 is), so it needs
  nothing a RAG pipeline lacks;
- ``rag-self-anchor``: :class:`~selfanchor_chains.SelfAnchorChain` with the passages as (anchored) context,
  plan/reason steps, at most ``min(max_new_tokens, 256)`` tokens;
- ``rag-top1-only``: plain RAG given only the passage the retriever ranks first (the baseline anchoring top-1 must
  beat where the ranker is right);
- ``rag-top1-last``: plain RAG on all passages with the one ranked first placed last, nearest the question (keeps
  the recall of all passages and the emphasis of position);
- ``rag-adaptive``: every passage anchored with AdaCAD's adaptive strength (Wang et al. 2024):
  ``ω_t = 1 + (ω−1)·JSD(p_orig ‖ p_masked)/ln 2`` per token, so a token steers only as far as the passages change
  the model's mind; ω = :data:`ADAPTIVE_OMEGA` = 1 + ln 2, AdaCAD's own weight, unless ``@ω`` sets the cap;
- ``rag-anchored-top1-only``: only the passage the ranker puts first, anchored (context-aware decoding on the
  retrieved passage, as CAD was evaluated: the masked branch sees the question alone, so ω > 1 pushes away from
  what the model would answer from memory);
- ``rag-anchored-top1-last``: all passages, the one ranked first placed last and anchored (the recall of all
  passages, the emphasis of position and of steering; and the masked branch has to recompute only the question
  after the anchored passage, so it costs about what plain RAG costs).

Every ranked method (``rag-anchored-top1``, ``rag-top1-only``, ``rag-top1-last`` and their anchored twins) reports
which passage the ranker put first (``ranked_first``), so a report can show the ranker's accuracy@1 beside the
methods.

Each direct-answer RAG method has a ``-sentence`` twin (``rag-plain-sentence``, ``rag-anchored-top1-sentence@2``
…): the same prompt asking for one short sentence instead of a few words, at most :data:`SENTENCE_ANSWER_TOKENS`
tokens, the whole reply graded (what users' RAG answers look like; the fair grader reads the entities it states).

``rag-anchored@2.5`` / ``rag-anchored-oracle@2.5`` / ``rag-anchored-top1@2.5`` set ω explicitly (for choosing ω
on the train split).
Retrieved passages are untrusted: they are escaped (:func:`~selfanchor_chains.prompting.anchor`), never read as
markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from ..prompting.markup import escape_anchor_markup
from ..prompting.rag_prompts import (
    ANSWER_INSTRUCTIONS,
    ANSWER_TOKENS,
    PASSAGES_TEMPLATE,
    format_numbered_passages,
    untrusted_text,
)
from .conflict_set import CONFLICT_METHODS, CONFLICT_METHODS_WITH_OMEGA, SENTENCE_SUFFIX
from .fingerprints import method_fingerprint
from .prompt_chains import OnePromptChain, generation_output, method_omega

__all__ = [
    "ADAPTIVE_OMEGA",
    "ANCHORED_OMEGA",
    "CONFLICT_METHODS",
    "SELF_ANCHOR_TOKENS",
    "SHORT_ANSWER_TOKENS",
    "ShortAnswerChain",
    "conflict_fingerprint",
    "make_conflict_chain",
    "parse_conflict_method",
]

ADAPTIVE_OMEGA = 1.0 + math.log(2.0)
"""Cap of ``rag-adaptive``'s per-token ω: with it, ω_t − 1 is AdaCAD's α = JSD (nats)."""

ANCHORED_OMEGA = 1.5
"""ω of ``rag-anchored`` and ``rag-anchored-oracle``, chosen on the train split by ``scripts/choose_conflict_omega.py``
(Qwen2.5-Coder-0.5B, grid 1.5 / 2 / 3; see ``results/conflictqa/README.md``)."""

SHORT_ANSWER_TOKENS = ANSWER_TOKENS["short"]
"""Token budget of the direct-answer methods (a name or a short phrase)."""

SENTENCE_ANSWER_TOKENS = ANSWER_TOKENS["sentence"]
"""Token budget of the ``-sentence`` variants (one sentence, as users' RAG answers are)."""

SELF_ANCHOR_TOKENS = 256
"""Token budget cap of ``rag-self-anchor`` (plan and reasoning steps, then the answer)."""

_SHORT = ANSWER_INSTRUCTIONS["short"]
_SENTENCE = ANSWER_INSTRUCTIONS["sentence"]
_PLAIN = PASSAGES_TEMPLATE
_INSTRUCTED = (
    "Instruction: read the given information and answer the corresponding question. Answer only from the given "
    "information, even if it contradicts what you know. {short}\n\nBob said:\n{passages}\n\nQuestion: {question}"
)
_CLOSED = "Answer the question. {short}\n\nQuestion: {question}"

_STYLE = {
    # method: (prompt, which passages are anchored)
    "closed-book": (_CLOSED, "none"),
    "rag-plain": (_PLAIN, "none"),
    "rag-instructed": (_INSTRUCTED, "none"),
    "rag-anchored": (_PLAIN, "all"),
    "rag-anchored-oracle": (_PLAIN, "evidence"),
    "rag-anchored-top1": (_PLAIN, "top"),
    "rag-top1-only": (_PLAIN, "none"),
    "rag-top1-last": (_PLAIN, "none"),
    "rag-adaptive": (_PLAIN, "all"),
    "rag-anchored-top1-only": (_PLAIN, "top"),
    "rag-anchored-top1-last": (_PLAIN, "top"),
}
# Methods that need the ranker's first passage; the last four keep only it, or move it last.
_RANKED = (
    "rag-anchored-top1",
    "rag-top1-only",
    "rag-top1-last",
    "rag-anchored-top1-only",
    "rag-anchored-top1-last",
)
_ONLY_TOP = ("rag-top1-only", "rag-anchored-top1-only")
_TOP_LAST = ("rag-top1-last", "rag-anchored-top1-last")
_NEW_VARIANTS = ("rag-top1-only", "rag-top1-last", "rag-adaptive", "rag-anchored-top1-only", "rag-anchored-top1-last")


def parse_conflict_method(name: str) -> tuple[str, float | None]:
    """``"rag-anchored@2.5"`` → ``("rag-anchored", 2.5)``; ``"rag-plain"`` → ``("rag-plain", None)``.

    Raises:
        ValueError: Unknown method, an ω on a method without steering, or an ω that is not a finite number ≥ 1.
    """
    base, sep, _ = name.partition("@")
    if base not in CONFLICT_METHODS:
        raise ValueError(f"unknown conflictqa method {name!r}; choose from {', '.join(CONFLICT_METHODS)}")
    if not sep:
        return base, None
    if base not in CONFLICT_METHODS_WITH_OMEGA:
        raise ValueError(f"{base} takes no ω (only {', '.join(CONFLICT_METHODS_WITH_OMEGA)} do), got {name!r}")
    return base, method_omega(name, example="rag-anchored@2.5")


class ShortAnswerChain(OnePromptChain):
    """A direct-answer RAG prompt over given passages, decoded in one batched call.

    Input: ``{"question", "passages", "evidence_index"}`` (see :func:`.conflict_set.chain_input`).
    Output: ``{"answer", "text", "finish_reason", "usage", "steps": [], "omega", "prompt"}``.

    Attributes:
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM`.
        method: One of the direct-answer methods of :data:`CONFLICT_METHODS`.
        omega: Steering strength (used only when some passage is anchored).
        max_new_tokens: Decoding budget.
        ranker: The embeddings ``rag-anchored-top1`` ranks passages with (default: MiniLM, loaded on first use).
        answer_style: ``"short"`` (a name or a few words; the answer is extracted from the reply) or
            ``"sentence"`` (one sentence; the whole reply is the answer, graded by what it states).
    """

    methods = tuple(_STYLE)

    llm: Any
    method: str = "rag-plain"
    omega: float = 1.0
    max_new_tokens: int = SHORT_ANSWER_TOKENS
    ranker: Any = None
    answer_style: Literal["short", "sentence"] = "short"  # checked when the chain is built

    def prompt(self, inputs: dict[str, Any], specials: Sequence[str] = (), top: int | None = None) -> str:
        """The prompt with anchor markup for one input.

        Args:
            inputs: ``{"question", "passages", "evidence_index"}``.
            specials: Control-token strings to remove from the (untrusted) question and passages.
            top: For the ranked methods: the index of the passage ranked first (:meth:`top_passages`).

        Raises:
            ValueError: Missing question or passages, an evidence index out of range, or no ``top`` for
                ``rag-anchored-top1``.
        """
        template, anchored = _STYLE[self.method]
        short = _SHORT if self.answer_style == "short" else _SENTENCE
        question = untrusted_text(str(inputs.get("question") or ""), specials)
        if not question:
            raise ValueError("conflictqa input lacks a question")
        passages = [str(p) for p in inputs.get("passages") or []]
        if self.method == "closed-book":
            return template.format(short=short, question=escape_anchor_markup(question))
        if not passages:
            raise ValueError(f"{self.method} needs passages; the input has none")
        evidence = inputs.get("evidence_index")
        if anchored == "evidence" and not (isinstance(evidence, int) and 0 <= evidence < len(passages)):
            raise ValueError(f"{self.method} needs a valid evidence_index, got {evidence!r}")
        if self.method in _RANKED and not (isinstance(top, int) and 0 <= top < len(passages)):
            raise ValueError(f"{self.method} needs the index of the top-ranked passage, got {top!r}")
        if self.method in _ONLY_TOP:
            passages, top = [passages[top]], 0  # type: ignore[index]
        elif self.method in _TOP_LAST:
            passages = [p for i, p in enumerate(passages) if i != top] + [passages[top]]  # type: ignore[index]
            top = len(passages) - 1
        chosen = {"evidence": evidence, "top": top}.get(anchored)
        flags = [anchored == "all" or i == chosen for i in range(len(passages))]
        if self.method == "rag-instructed":
            question = question.rstrip(" ?") + " in Bob's opinion?"
        return template.format(
            short=short,
            passages=format_numbered_passages(passages, flags, specials),
            question=escape_anchor_markup(question),
        )

    def input_error(self, item: dict[str, Any]) -> Exception | None:
        try:  # any in-range index stands in for the ranker's choice: it only checks the fields
            self.prompt(item, top=0 if self.method in _RANKED else None)
        except (TypeError, ValueError) as error:
            return error
        return None

    def top_passages(self, inputs: Sequence[dict[str, Any]]) -> list[int | None]:
        """For the ranked methods, the index of each input's passage most similar to its question (else None).

        Embeddings are L2-normalised (MiniLM's are), so the dot product is the cosine similarity a vector store
        ranks by; ties go to the earlier passage.
        """
        if self.method not in _RANKED:
            return [None] * len(inputs)
        if self.ranker is None:
            from ..langchain.embeddings import MiniLMEmbeddings

            self.ranker = MiniLMEmbeddings()
        passages = [[str(p) for p in item.get("passages") or []] for item in inputs]
        # All the passages in one embedding call (the ranker batches them); queries through embed_query, which
        # may differ from a document's embedding (e.g. an instruction prefix).
        queries = [self.ranker.embed_query(str(item.get("question") or "")) for item in inputs]
        vectors = iter(self.ranker.embed_documents([p for item in passages for p in item]))
        tops: list[int | None] = []
        for query, item in zip(queries, passages, strict=True):
            scores = [sum(a * b for a, b in zip(query, next(vectors), strict=True)) for _ in item]
            tops.append(max(range(len(scores)), key=lambda i: (scores[i], -i)) if scores else None)
        return tops

    def decode_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from ..answers.locate import short_answer
        from ..prompting.control_tokens import special_token_strings

        specials = special_token_strings(self.llm.tokenizer)
        if self.method in _RANKED:  # every input is checked before the ranker runs
            for item in inputs:
                self.prompt(item, specials, top=0)
        tops = self.top_passages(inputs)  # building the prompts checks every input before any decoding
        prompts = [self.prompt(item, specials, top) for item, top in zip(inputs, tops, strict=True)]
        steered = _STYLE[self.method][1] != "none"
        omega = self.omega if steered else 1.0
        scaling = "divergence" if self.method == "rag-adaptive" else "constant"
        result = self.llm.generate(prompts, omega=omega, omega_scaling=scaling, max_new_tokens=self.max_new_tokens)
        outputs = []
        for prompt, top, generations in zip(prompts, tops, result.generations, strict=True):
            output = generation_output(prompt, generations[0], omega)
            text = output["text"]
            output["answer"] = short_answer(text) if self.answer_style == "short" else " ".join(text.split())
            if top is not None:
                output["ranked_first"] = top
                if _STYLE[self.method][1] == "top":  # the index in the item's own order, before any reordering
                    output["anchored_passage"] = top
            outputs.append(output)
        return outputs


def _self_anchor(llm: Any, max_new_tokens: int) -> Any:
    from langchain_core.documents import Document
    from langchain_core.runnables import RunnableLambda

    from ..reasoning.chains import SelfAnchorChain

    def to_context(inputs: dict[str, Any]) -> dict[str, Any]:
        passages = [str(p) for p in inputs.get("passages") or []]
        if not passages:
            raise ValueError("rag-self-anchor needs passages; the input has none")
        return {"question": inputs["question"], "context": [Document(page_content=p) for p in passages]}

    # No worked example whatever SelfAnchorChain's default: the answer comes from the passages, and the examples are
    # math and multiple-choice solutions that would compete with them (the conflictqa results were made without).
    chain = SelfAnchorChain(
        llm=llm, bench="conflictqa", max_new_tokens=min(max_new_tokens, SELF_ANCHOR_TOKENS), worked_example=False
    )
    return RunnableLambda(to_context) | chain


def make_conflict_chain(method: str, llm: Any, *, max_new_tokens: int = SHORT_ANSWER_TOKENS) -> Any:
    """The runnable of a conflictqa method (``rag-anchored@ω`` sets ω).

    Args:
        method: A name of :data:`CONFLICT_METHODS`, optionally with ``@ω`` for the anchored ones.
        llm: A :class:`~selfanchor_chains.langchain.llm.SteeredHFLLM`.
        max_new_tokens: The run's budget; direct-answer methods use at most :data:`SHORT_ANSWER_TOKENS`,
            ``rag-self-anchor`` at most :data:`SELF_ANCHOR_TOKENS`.

    Raises:
        ValueError: Unknown method or bad ω.
        TypeError: ``llm`` is not a SteeredHFLLM.
    """
    from ..langchain.llm import SteeredHFLLM

    base, omega = parse_conflict_method(method)
    style: Literal["short", "sentence"] = "sentence" if base.endswith(SENTENCE_SUFFIX) else "short"
    base = base.removesuffix(SENTENCE_SUFFIX)
    if not isinstance(llm, SteeredHFLLM):
        raise TypeError(f"conflictqa methods need a SteeredHFLLM, got {type(llm).__name__}")
    if base == "rag-self-anchor":
        return _self_anchor(llm, max_new_tokens)
    default = ADAPTIVE_OMEGA if base == "rag-adaptive" else ANCHORED_OMEGA
    return ShortAnswerChain(
        llm=llm,
        method=base,
        omega=default if omega is None else omega,
        max_new_tokens=min(max_new_tokens, SHORT_ANSWER_TOKENS if style == "short" else SENTENCE_ANSWER_TOKENS),
        answer_style=style,
    )


def conflict_fingerprint(chain: Any) -> str:
    """A short hash of what decides a conflictqa method's answers besides the model: prompt, anchoring, ω, budget
    (for ``rag-self-anchor``, the reasoning chain's own fingerprint).

    Results written under one configuration are not mixed with another's (the eval runner refuses the folder).
    """
    import hashlib
    import json

    if isinstance(chain, ShortAnswerChain):
        template, anchored = _STYLE[chain.method]
        payload: dict[str, Any] = {
            "method": chain.method,
            "template": template,
            "short": _SHORT,
            "anchored": anchored,
            "omega": chain.omega,
            "max_new_tokens": chain.max_new_tokens,
        }
        if chain.method in _RANKED:
            payload["ranker"] = type(chain.ranker).__name__ if chain.ranker is not None else "MiniLMEmbeddings"
        if chain.method in _NEW_VARIANTS:  # methods added later: their own hashes
            payload["variant"] = chain.method
        if chain.answer_style != "short":  # (absent for short answers: earlier runs keep their hashes)
            payload["answer_style"] = chain.answer_style
            payload["short"] = _SENTENCE
    else:
        reasoner = chain.last  # RunnableLambda(to_context) | SelfAnchorChain
        payload = {
            "method": "rag-self-anchor",
            "reasoner": method_fingerprint(reasoner, reasoner.llm, "", "conflictqa"),
        }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
