"""`auto`: tell which use case a request is from its content.

One pass of a word regex plus a few substring tests scan the last user turn (at most the
first 6,000 and the last 2,000 characters of it, so a 200,000-character prompt
costs the same as a short one) and counts signals per use case:

- code: code fences, stack traces and compiler errors, language and tooling
  names, code-shaped lines (``def f(``, ``#include``, ``SELECT ... FROM``);
- reasoning: maths, proofs, puzzles, "step by step", equations;
- analytical: data, tables, comparisons, trends, summaries of documents;
- creative: stories, poems, lyrics, characters, role play;
- chat: greetings and small talk.

Strong signals (a code fence, a traceback) weigh more than a single word. The
use case with the highest score wins; ties go to the earlier one in the list
above; with no signal at all the configured default (chat) is used.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..types import Capability

HEAD = 6000
TAIL = 2000

# Single words: counted with one pass of a word regex and dict look-ups.
_WORDS: dict[Capability, str] = {
    "code": """python javascript typescript java rust golang kotlin swift c++ c# ruby php sql
        bash powershell regex regexp html css json yaml dockerfile kubernetes function
        functions method class compile compiler compiles debug debugging refactor
        refactoring stacktrace segfault bug bugs unittest api endpoint algorithm code
        script snippet variable recursion git npm pip linter async await lambda
        exception null pointer boolean struct enum int string array""",
    "reasoning": """prove proof theorem lemma derive derivation deduce logic logical puzzle
        riddle paradox solve equation equations integral derivative probability factorial
        prime primes induction syllogism infer reasoning math maths mathematics calculate
        reason therefore implies""",
    "analytical": """analyze analyse analysis compare comparison contrast versus vs pros
        cons tradeoff tradeoffs dataset data table csv spreadsheet statistics statistical
        trend trends correlation metric metrics kpi kpis summarize summarise summary
        evaluate assess assessment report breakdown insight insights forecast benchmark""",
    "creative": """story stories poem poems poetry haiku sonnet limerick lyrics song verse
        fiction novel fairytale fable screenplay character characters plot villain hero
        dragon imagine roleplay fantasy creative rhyme narrative slogan tagline""",
    "chat": """hi hello hey yo thanks thank cheers bye morning evening""",
}
_LOOKUP: dict[str, Capability] = {w: cap for cap, words in _WORDS.items() for w in words.split()}
_WORD_RX = re.compile(r"[a-z][a-z0-9+#]*")

# Strong signals and phrases: substring tests on the lower-cased window.
_PHRASES: tuple[tuple[str, Capability, int], ...] = (
    ("```", "code", 6),
    ("~~~", "code", 6),
    ("traceback (most recent call last)", "code", 6),
    ("exception in thread", "code", 6),
    ("panicked at", "code", 6),
    ("segmentation fault", "code", 6),
    ("syntaxerror", "code", 6),
    ("typeerror", "code", 4),
    ("undefined reference", "code", 6),
    ("#include", "code", 4),
    ("def ", "code", 2),
    ("import ", "code", 1),
    ("select ", "code", 1),
    ("=>", "code", 2),
    ("();", "code", 3),
    ("step by step", "reasoning", 3),
    ("step-by-step", "reasoning", 3),
    ("how many", "reasoning", 2),
    ("why does", "reasoning", 2),
    ("what follows", "reasoning", 2),
    ("pros and cons", "analytical", 4),
    ("trade-off", "analytical", 2),
    ("once upon a time", "creative", 4),
    ("fairy tale", "creative", 3),
    ("role-play", "creative", 3),
    ("write a story", "creative", 3),
    ("how are you", "chat", 3),
    ("what's up", "chat", 3),
    ("nice to meet", "chat", 3),
    ("tell me about yourself", "chat", 3),
    ("good morning", "chat", 2),
)
_MATH = re.compile(r"[∫∑∏√≤≥≠∀∃]|\d+\s*[\^*/+\-]\s*\d+\s*=")

_ORDER: tuple[Capability, ...] = ("code", "reasoning", "analytical", "creative", "chat")


class Classification(NamedTuple):
    capability: Capability
    scores: dict[Capability, int]
    reason: str


def window(text: str) -> str:
    """The part of a turn that is scanned."""
    if len(text) <= HEAD + TAIL:
        return text
    return text[:HEAD] + "\n" + text[-TAIL:]


def classify(text: str, default: Capability = "chat") -> Classification:
    low = window(text).lower()
    scores = dict.fromkeys(_ORDER, 0)
    hits: dict[str, int] = {}
    lookup = _LOOKUP
    for word in _WORD_RX.findall(low):
        cap = lookup.get(word)
        if cap is not None:
            scores[cap] += 2
            hits[word] = hits.get(word, 0) + 1
    for phrase, cap, weight in _PHRASES:
        if phrase in low:
            scores[cap] += weight
            hits[phrase.strip()] = 1
    if _MATH.search(low):
        scores["reasoning"] += 3
        hits["maths"] = 1
    best: Capability = default
    top = 0
    for cap in _ORDER:
        if scores[cap] > top:
            best, top = cap, scores[cap]
    if top == 0:
        return Classification(default, scores, f"no signal; default {default}")
    signals = ", ".join(f"{k!r}" for k, _ in sorted(hits.items(), key=lambda kv: -kv[1])[:3])
    return Classification(best, scores, f"{best} (score {top}: {signals})")
