"""Commands and data shared by the integration tests."""

from __future__ import annotations

import collections
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from example.word_count import MAP_COMMAND, REDUCE_COMMAND

__all__ = ["MAP_COMMAND", "REDUCE_COMMAND", "make_text", "python_counts", "parse_counts"]

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
         "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi",
         "chi", "psi", "omega", "Genome", "READ,", "read.", "BAM!"]


def make_text(lines: int, seed: int = 7) -> list[str]:
    """Deterministic lines of words, with punctuation, capitals and empty lines."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))) for _ in range(lines)]


def python_counts(lines) -> dict[str, int]:
    """What the word-count commands compute, in pure Python."""
    return dict(collections.Counter(
        word for line in lines for word in re.sub("[^a-z0-9]+", " ", line.lower()).split()))


def parse_counts(lines) -> dict[str, int]:
    counts = {}
    for line in lines:
        word, count = line.split("\t")
        assert word not in counts, f"{word} appears twice"
        counts[word] = int(count)
    return counts
