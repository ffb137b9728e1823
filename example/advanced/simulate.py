#!/usr/bin/env python3
"""Simulate a reference genome and paired-end reads from it, deterministically.

    python example/advanced/simulate.py OUT_DIR [--genome-size 2000000] [--pairs 100000]

writes ``OUT_DIR/ref/ref.fa`` (random contigs, with a few repeated segments
so that some reads map to two places) and ``OUT_DIR/reads_1.fq`` and
``OUT_DIR/reads_2.fq``: read pairs of ``--read-length`` bases from the two
ends of fragments whose length is normally distributed, taken from both
strands (forward-reverse orientation, as Illumina paired-end reads), with
substitution errors at ``--error-rate`` and Phred+33 quality strings that mark
them. Mate names are ``read<i>/1`` and ``read<i>/2``, in the same order in both
files. The same arguments (and ``--seed``) always give the same bytes.
Standard library only: no numpy needed.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys

BASES = "ACGT"
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
# a substitution never gives the same base back
SUBSTITUTE = {base: [other for other in BASES if other != base] for base in BASES + "N"}
FASTA_WIDTH = 60


def reverse_complement(sequence: str) -> str:
    return sequence.translate(COMPLEMENT)[::-1]


def make_reference(rng: random.Random, size: int, contigs: int,
                   repeat_fraction: float, repeat_length: int) -> list[tuple[str, str]]:
    """``contigs`` random contigs of ``size`` bases in total; some segments copied elsewhere."""
    lengths = [size // contigs] * contigs
    lengths[-1] += size - sum(lengths)
    sequences = [bytearray("".join(rng.choices(BASES, k=length)), "ascii") for length in lengths]
    copies = int(size * repeat_fraction) // repeat_length
    for _ in range(copies):
        source = rng.randrange(contigs)
        target = rng.randrange(contigs)
        if min(len(sequences[source]), len(sequences[target])) <= repeat_length:
            continue
        start = rng.randrange(len(sequences[source]) - repeat_length)
        end = rng.randrange(len(sequences[target]) - repeat_length)
        sequences[target][end:end + repeat_length] = sequences[source][start:start + repeat_length]
    return [(f"chr{index + 1}", sequence.decode()) for index, sequence in enumerate(sequences)]


def write_fasta(path: str, contigs: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="ascii") as handle:
        for name, sequence in contigs:
            handle.write(f">{name}\n")
            for start in range(0, len(sequence), FASTA_WIDTH):
                handle.write(sequence[start:start + FASTA_WIDTH] + "\n")


class ReadMaker:
    """Adds substitution errors to a read and makes its quality string."""

    def __init__(self, rng: random.Random, length: int, error_rate: float, templates: int = 64):
        self.rng = rng
        self.error_rate = error_rate
        self.log_keep = math.log(1.0 - error_rate) if 0 < error_rate < 1 else None
        # qualities that fall off along the read, as on an Illumina run: Phred 20-40
        self.templates = []
        for _ in range(templates):
            quality = [max(20, min(40, round(38 - 8 * i / length + rng.gauss(0, 2))))
                       for i in range(length)]
            self.templates.append(quality)

    def error_positions(self, length: int) -> list[int]:
        """Positions of substitution errors: geometric gaps, one draw per error."""
        if self.log_keep is None:
            return list(range(length)) if self.error_rate >= 1 else []
        positions = []
        position = -1
        while True:
            position += 1 + int(math.log(1.0 - self.rng.random()) / self.log_keep)
            if position >= length:
                return positions
            positions.append(position)

    def read(self, sequence: str) -> tuple[str, str]:
        """The sequence with errors, and its quality string (Phred 2 where a base is wrong)."""
        bases = list(sequence)
        quality = list(self.templates[self.rng.randrange(len(self.templates))][:len(bases)])
        for position in self.error_positions(len(bases)):
            bases[position] = self.rng.choice(SUBSTITUTE[bases[position]])
            quality[position] = 2
        return "".join(bases), "".join(chr(33 + q) for q in quality)


def simulate(out_dir: str, genome_size: int = 2_000_000, pairs: int = 100_000,
             read_length: int = 150, fragment_mean: float = 400, fragment_sd: float = 50,
             error_rate: float = 0.01, contigs: int = 2, repeat_fraction: float = 0.01,
             repeat_length: int = 1000, seed: int = 1) -> dict[str, str]:
    """Write ref/ref.fa, reads_1.fq and reads_2.fq under ``out_dir``; return their paths."""
    if genome_size < contigs * 2 * fragment_mean:
        raise ValueError(f"genome size {genome_size} is too small for {contigs} contigs "
                         f"and fragments of {fragment_mean} bases")
    rng = random.Random(seed)
    reference = make_reference(rng, genome_size, contigs, repeat_fraction, repeat_length)
    paths = {"reference": os.path.join(out_dir, "ref", "ref.fa"),
             "reads_1": os.path.join(out_dir, "reads_1.fq"),
             "reads_2": os.path.join(out_dir, "reads_2.fq")}
    os.makedirs(os.path.dirname(paths["reference"]), exist_ok=True)
    write_fasta(paths["reference"], reference)

    maker = ReadMaker(rng, read_length, error_rate)
    weights = [len(sequence) for _, sequence in reference]
    with open(paths["reads_1"], "w", encoding="ascii") as out_1, \
            open(paths["reads_2"], "w", encoding="ascii") as out_2:
        for index in range(pairs):
            _, contig = rng.choices(reference, weights=weights)[0]
            fragment = max(read_length, min(len(contig), round(rng.gauss(fragment_mean,
                                                                         fragment_sd))))
            start = rng.randrange(len(contig) - fragment + 1)
            forward = contig[start:start + fragment]
            if rng.random() < 0.5:  # the fragment comes from the reverse strand
                forward = reverse_complement(forward)
            first = forward[:read_length]
            second = reverse_complement(forward[-read_length:])
            for out, mate, sequence in ((out_1, 1, first), (out_2, 2, second)):
                bases, quality = maker.read(sequence)
                out.write(f"@read{index}/{mate}\n{bases}\n+\n{quality}\n")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="where to write ref/ref.fa, reads_1.fq and reads_2.fq")
    parser.add_argument("--genome-size", type=int, default=2_000_000,
                        help="reference size in bases (default %(default)s)")
    parser.add_argument("--pairs", type=int, default=100_000,
                        help="number of read pairs (default %(default)s)")
    parser.add_argument("--read-length", type=int, default=150)
    parser.add_argument("--fragment-mean", type=float, default=400)
    parser.add_argument("--fragment-sd", type=float, default=50)
    parser.add_argument("--error-rate", type=float, default=0.01,
                        help="substitution rate per base (default %(default)s)")
    parser.add_argument("--contigs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    paths = simulate(args.out_dir, genome_size=args.genome_size, pairs=args.pairs,
                     read_length=args.read_length, fragment_mean=args.fragment_mean,
                     fragment_sd=args.fragment_sd, error_rate=args.error_rate,
                     contigs=args.contigs, seed=args.seed)
    sizes = ", ".join(f"{os.path.basename(path)} {os.path.getsize(path) / 1e6:.1f} MB"
                      for path in paths.values())
    print(f"simulated {args.genome_size} bases in {args.contigs} contigs and {args.pairs} "
          f"read pairs of {args.read_length} bases in {args.out_dir}: {sizes}", file=sys.stderr)


if __name__ == "__main__":
    main()
