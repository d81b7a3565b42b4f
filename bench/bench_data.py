"""Timings of rmtlib.data: first extraction, later (stamped) loads, full verification.

Usage: ``python bench/bench_data.py [--src DIR] [--repeat 3] [--totensor]``.  ``--src`` is a
root with ``MNIST/raw/*.gz`` and ``FashionMNIST/raw/*.gz`` (default ``$RMTLIB_TEST_DATA`` or
``<repo>/../shared/data``); all writes go to a temporary root and cache.  ``--totensor`` also
times the per-sample ``DataLoader`` + ``ToTensor`` path, for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    default = os.environ.get("RMTLIB_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared/data"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path(default))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--totensor", action="store_true")
    args = ap.parse_args()

    t_torch, _ = timed(lambda: __import__("torch"))
    t_tv, _ = timed(lambda: __import__("torchvision.datasets"))
    from rmtlib.data import DATASETS, load_dataset, prepare_dataset

    print(f"import torch {t_torch:.2f} s, torchvision.datasets {t_tv:.2f} s (not counted below)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        os.environ["RMTLIB_CACHE"] = str(Path(tmp) / "cache")
        for folder in ("MNIST", "FashionMNIST"):
            raw = root / folder / "raw"
            raw.mkdir(parents=True)
            for gz in (args.src / folder / "raw").glob("*.gz"):
                (raw / gz.name).symlink_to(gz.resolve())

        first, _ = timed(lambda: [prepare_dataset(k, root) for k in DATASETS])
        print(f"first extraction + verification, both datasets: {first:.2f} s")
        for label, fn in [
            ("prepare (stamps only), both", lambda: [prepare_dataset(k, root) for k in DATASETS]),
            ("load_dataset, both", lambda: [load_dataset(k, root) for k in DATASETS]),
            ("load_dataset normalize=(0.5, 0.5), both",
             lambda: [load_dataset(k, root, normalize=(0.5, 0.5)) for k in DATASETS]),
            ("prepare verify=True (re-hash + .gz check), both",
             lambda: [prepare_dataset(k, root, verify=True) for k in DATASETS]),
        ]:
            ts = [timed(fn)[0] for _ in range(args.repeat)]
            print(f"{label}: median {statistics.median(ts):.4f} s, min {min(ts):.4f} s "
                  f"({args.repeat} runs)")

        if args.totensor:
            import torch
            from torchvision import datasets, transforms

            def per_sample():
                for train in (True, False):
                    ds = datasets.MNIST(str(root), train=train, transform=transforms.ToTensor())
                    x, y = zip(*(b for b in torch.utils.data.DataLoader(ds, batch_size=1000)))
                    torch.cat(x), torch.cat(y)

            t, _ = timed(per_sample)
            print(f"MNIST via DataLoader + ToTensor (per sample), for comparison: {t:.2f} s")


if __name__ == "__main__":
    main()
