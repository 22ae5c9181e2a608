#!/usr/bin/env python3
"""Independent reference for evolve's random streams (rng.go), in plain
Python integers: PCG-DXSM with a 128-bit LCG (multiplier
0x2360ED051FC65DA44385DF649FCCF645, increment
0x5851F42D4C957F2D14057B7EF767814F; the state is advanced, then the new state
is output through DXSM, as Go's math/rand/v2 PCG documents), seeded
(seed1 = seed, seed2 = splitmix64(purpose<<56 ^ (generation+1)<<16 ^ stage)),
and bounded integers by Lemire's multiply-and-reject.

    python3 evolve/testdata/gen/streams.py > evolve/testdata/streams.json
"""
import json

M64 = (1 << 64) - 1
M128 = (1 << 128) - 1
MUL = 0x2360ED051FC65DA44385DF649FCCF645
INC = 0x5851F42D4C957F2D14057B7EF767814F


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


class Stream:
    def __init__(self, seed, purpose, generation, stage):
        s2 = splitmix64(((purpose << 56) ^ (((generation + 1) & M64) << 16) ^ stage) & M64)
        self.state = ((seed & M64) << 64) | s2

    def u64(self):
        self.state = (self.state * MUL + INC) & M128
        hi, lo = self.state >> 64, self.state & M64
        hi ^= hi >> 32
        hi = (hi * 0xDA942042E4DD58B5) & M64
        hi ^= hi >> 48
        return (hi * (lo | 1)) & M64

    def intn(self, n):
        m = self.u64() * n
        hi, lo = m >> 64, m & M64
        if lo < n:
            thresh = ((1 << 64) - n) % n
            while lo < thresh:
                m = self.u64() * n
                hi, lo = m >> 64, m & M64
        return hi


cases = []
for seed, purpose, gen, stage, bound in [
    (0, 1, 0, 0, 1 << 30),
    (0, 2, 3, 1, 3),
    (12345, 2, -1, 0, 1000003),
    (-7, 3, -1, 0, 17),
    (2**62 + 5, 1, 199, 0, 2**62 + 1),
]:
    r = Stream(seed, purpose, gen, stage)
    cases.append({"seed": seed, "purpose": purpose, "generation": gen, "stage": stage,
                  "bound": bound, "draws": [r.intn(bound) for _ in range(20)]})
print(json.dumps(cases, indent=1))
