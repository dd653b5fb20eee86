"""Cost of the attention report's bootstrap bands: `scipy.stats.bootstrap` (what `attention_stats.bootstrap_ratio`
uses) against the hand-written resampling it replaced (multinomial episode weights, one matrix product).

    python benchmarks/attention_bootstrap.py            # a table of seconds per layer, both ways

Shapes are those of one layer's lag profiles: episodes x heads x (M + 1) lags, 1000 resamples.
"""

import argparse
import json
import platform
import time

import numpy as np

from vptlens.probes.attention_stats import bootstrap_ratio, expanded_alpha


def hand_bootstrap_ratio(num_e, den_e, n_bootstrap, confidence, rng):
    """The replaced implementation: resampling weights (b, e) @ sums (e, ...), then nanquantile."""
    num_e, den_e = np.broadcast_arrays(np.asarray(num_e, np.float64), np.asarray(den_e, np.float64))
    n, shape = num_e.shape[0], num_e.shape[1:]
    mean = num_e.sum(0) / den_e.sum(0)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(np.float64)
    ratio_b = (weights @ num_e.reshape(n, -1)) / (weights @ den_e.reshape(n, -1))
    alpha = expanded_alpha(n, confidence) / 2
    lo, hi = np.nanquantile(ratio_b, [alpha, 1 - alpha], axis=0)
    return mean, lo.reshape(shape), hi.reshape(shape)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n_episodes, n_heads, n_lags in ((5, 4, 33), (20, 16, 129), (100, 16, 129)):
        num = rng.uniform(size=(n_episodes, n_heads, n_lags))
        den = rng.integers(50, 200, size=(n_episodes, 1, n_lags)).astype(np.float64)
        row = {"episodes": n_episodes, "heads": n_heads, "lags": n_lags}
        for name, fn in (("scipy", bootstrap_ratio), ("hand", hand_bootstrap_ratio)):
            run = lambda fn=fn, num=num, den=den: fn(num, den, args.n_bootstrap, 0.95, np.random.default_rng(1))
            row[name] = best_of(run, args.repeats)
        rows.append(row)
        print(f"{n_episodes:4d} episodes x {n_heads:2d} heads x {n_lags:3d} lags: scipy {row['scipy']:.3f} s, "
              f"hand {row['hand']:.3f} s ({row['scipy'] / row['hand']:.1f}x)")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": platform.platform(), "processor": platform.processor(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
