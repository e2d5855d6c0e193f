"""Text hints for tridigits: always truthful, often ambiguous.

A hint is a numeral ("7"), the digit's word in one of several languages ("sieben", "sept"), or a partial
hint naming a set of 2–5 digits that contains the true one ("an odd number above five", "less than
three"). Typos (letters only, never digits) are added at random; a typo that happens to spell another
digit's word is rejected, so no hint ever lies.
"""

from __future__ import annotations

import numpy as np

WORDS = {
    "en": "zero one two three four five six seven eight nine",
    "de": "null eins zwei drei vier fünf sechs sieben acht neun",
    "fr": "zéro un deux trois quatre cinq six sept huit neuf",
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve",
    "it": "zero uno due tre quattro cinque sei sette otto nove",
    "pt": "zero um dois três quatro cinco seis sete oito nove",
    "nl": "nul een twee drie vier vijf zes zeven acht negen",
}
WORDS = {lang: words.split() for lang, words in WORDS.items()}
# every spelling that names a digit, and which digit: typos must not land on another one
_NAMES = {word: d for words in WORDS.values() for d, word in enumerate(words)} | {str(d): d for d in range(10)}
EXACT_TEMPLATES = ("{w}", "{w}", "it is {w}", "the number {w}", "digit {w}", "{w}!", "I think {w}")
_ODD, _EVEN = frozenset({1, 3, 5, 7, 9}), frozenset({0, 2, 4, 6, 8})
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _number(k: int, rng: np.random.Generator) -> str:
    """k as a numeral or an English word (partial hints mix both)."""
    return str(k) if rng.random() < 0.5 else WORDS["en"][k]


def _partial_catalogue() -> list[tuple[str, frozenset[int]]]:
    """Every partial hint as (template with {k}/{a}/{b} slots filled later, the digits it allows)."""
    hints: list[tuple[str, frozenset[int]]] = [
        ("an odd number", _ODD),
        ("an even number", _EVEN),
        ("a prime number", frozenset({2, 3, 5, 7})),
        ("a perfect square", frozenset({0, 1, 4, 9})),
    ]
    for k in range(10):
        hints.append((f"less than {{{k}}}", frozenset(range(k))))
        hints.append((f"more than {{{k}}}", frozenset(range(k + 1, 10))))
        for parity, digits in (("an odd", _ODD), ("an even", _EVEN)):
            hints.append((f"{parity} number above {{{k}}}", frozenset(d for d in digits if d > k)))
            hints.append((f"{parity} number below {{{k}}}", frozenset(d for d in digits if d < k)))
        for width in (2, 3, 4):
            if k + width <= 9:
                hints.append((f"between {{{k}}} and {{{k + width}}}", frozenset(range(k, k + width + 1))))
    return hints


PARTIAL_HINTS = _partial_catalogue()


def _fill(template: str, rng: np.random.Generator) -> str:
    """Replace each {k} slot by the number k, written as a numeral or a word."""
    for k in range(10):
        template = template.replace(f"{{{k}}}", _number(k, rng))
    return template


def partial_hint(digit: int, rng: np.random.Generator, sizes: tuple[int, int]) -> str:
    """A true hint naming between sizes[0] and sizes[1] digits, the true one among them."""
    lo, hi = sizes
    options = [t for t, digits in PARTIAL_HINTS if digit in digits and lo <= len(digits) <= hi]
    return _fill(options[rng.integers(len(options))], rng)


def exact_hint(digit: int, rng: np.random.Generator, numeral_share: float) -> str:
    """The digit itself: a numeral, or its word in a random language, inside a random template."""
    if rng.random() < numeral_share:
        word = str(digit)
    else:
        languages = sorted(WORDS)
        word = WORDS[languages[rng.integers(len(languages))]][digit]
    return EXACT_TEMPLATES[rng.integers(len(EXACT_TEMPLATES))].format(w=word)


def _edit(text: str, rng: np.random.Generator) -> str:
    """One random letter-level edit (swap, drop, double, replace) of a letter, never of a digit."""
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 3:
        return text
    i = letters[rng.integers(len(letters))]
    kind = rng.integers(4)
    if kind == 0 and i + 1 < len(text) and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    return text[:i] + _LETTERS[rng.integers(len(_LETTERS))] + text[i + 1 :]


def add_typos(text: str, digit: int, rng: np.random.Generator, max_edits: int = 2) -> str:
    """1..max_edits typos; falls back to the original if a typo would name a different digit."""
    for _ in range(5):
        typo = text
        for _ in range(1 + rng.integers(max_edits)):
            typo = _edit(typo, rng)
        named = {_NAMES[w] for w in typo.lower().replace("!", " ").split() if w in _NAMES}
        if named <= {digit} and typo.strip():
            return typo
    return text


def make_hint(digit: int, rng: np.random.Generator, cfg) -> tuple[str, str]:
    """(hint text, kind) for one item; cfg is a DemoConfig (its text fields)."""
    if rng.random() < cfg.text_partial_share:
        text, kind = partial_hint(digit, rng, cfg.partial_set_sizes), "partial"
    else:
        text, kind = exact_hint(digit, rng, cfg.text_numeral_share), "exact"
    if rng.random() < cfg.text_typo_prob:
        typo = add_typos(text, digit, rng, cfg.text_max_typos)
        kind += "+typo" if typo != text else ""
        text = typo
    return text, kind
