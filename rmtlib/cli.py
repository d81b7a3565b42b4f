"""The ``rmtlib`` command line (also ``python -m rmtlib``).

::

    rmtlib analyze MODEL [--arch torchvision:resnet18 | package.module:factory]
                         [--selectors gavish_donoho energy ...] [--csv F | --json F]
                         [--plots DIR] [--data mnist|fashion_mnist]
    rmtlib prune MODEL --out FILE [--report F.json] [--keep-fraction 0.45]
                       [--selector bema] [--action factorize] [--data ...]

``MODEL`` is an rmtlib checkpoint (:func:`rmtlib.train.save_checkpoint`; its architecture is
recorded) or a plain ``state_dict`` file together with ``--arch``.  ``analyze`` prints one row
per weight matrix (:func:`rmtlib.spectra.analyze`); ``prune`` applies a
:class:`rmtlib.prune.PrunePolicy`, writes the pruned model as an rmtlib checkpoint (it loads
with ``torch.load(weights_only=True)``, or with ``rmtlib analyze`` and
:func:`rmtlib.train.load_model`) and a JSON report (ranks and parameters before and after,
the reason for every layer left alone).  With ``--data`` both also report the test accuracy
before and after pruning (``analyze``: of a copy pruned with the default policy, not saved).

Bad input -- a missing or unreadable file, keys that do not match the architecture, an unknown
architecture or option -- prints one line on stderr and exits with status 2, before anything is
written; existing output files are never replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
from pathlib import Path

__all__ = ["main"]

_TABLE_COLUMNS = ["name", "type", "shape", "params", "sigma2", "lambda_plus", "spikes", "gof",
                  "accepted", "rank", "status", "reason"]
_PRUNE_COLUMNS = ["name", "action", "rank_before", "rank_after", "params_before", "params_after",
                  "reason"]


class UsageError(Exception):
    """A bad command line (reported in one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


def _json_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} must be a JSON object such as '{{\"num_classes\": 10}}': {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return v


def _gof(text: str):
    if text.lower() == "none":
        return None
    if text == "calibrated":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a cutoff in (0, 1], 'calibrated' or 'none', "
                                         f"got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be a cutoff in (0, 1], got {text!r}")
    return v


def _parser() -> _Parser:
    from .prune import ACTIONS
    from .rank import available_methods

    selectors = list(available_methods())
    top = _Parser(prog="rmtlib", description="Random-matrix-theory analysis and pruning of "
                  "PyTorch models (per-layer spectra, BEMA, SVD pruning).")
    sub = top.add_subparsers(dest="command", parser_class=_Parser, metavar="{analyze,prune}")

    def common(p):
        p.add_argument("model", metavar="MODEL", help="an rmtlib checkpoint, or a state_dict file "
                       "with --arch")
        p.add_argument("--arch", help="architecture: torchvision:NAME (random init, never "
                       "downloaded) or package.module:factory")
        p.add_argument("--arch-kwargs", default="{}", metavar="JSON",
                       help="keyword arguments of the architecture, e.g. '{\"num_classes\": 10}'")
        p.add_argument("--device", default="auto", help="auto (CUDA, MPS, else CPU), cpu, cuda, "
                       "cuda:N or mps (default auto)")
        p.add_argument("--data", choices=["mnist", "fashion_mnist"],
                       help="also report the test accuracy before and after pruning")
        p.add_argument("--alpha", type=float, default=0.2, help="BEMA trimmed fraction (0.2)")
        p.add_argument("--beta", type=float, default=0.1,
                       help="BEMA Tracy-Widom tail probability (0.1)")
        p.add_argument("--gof", type=_gof, default=0.1,
                       help="goodness-of-fit rule: a cutoff, 'calibrated' or 'none' (0.1)")
        p.add_argument("--paper-exact", action="store_true",
                       help="the authors' BEMA quirks (see the documentation)")
        p.add_argument("--overwrite", action="store_true", help="replace existing output files")
        bar = p.add_mutually_exclusive_group()
        bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                         help="show a progress bar over the layers (default: when stderr is a "
                              "terminal)")
        bar.add_argument("--no-progress", dest="progress", action="store_false")

    a = sub.add_parser("analyze", help="per-layer spectra, fits and ranks",
                       description="Print one row per weight matrix: shape, BEMA fit, goodness "
                                   "of fit, rank; skipped layers with the reason.")
    common(a)
    a.add_argument("--selectors", nargs="+", default=[], choices=selectors, metavar="SELECTOR",
                   help=f"further rank selectors, reported as rank_<name> ({', '.join(selectors)})")
    a.add_argument("--selector-opts", default="{}", metavar="JSON",
                   help="options per selector, e.g. '{\"screenot\": {\"k\": 20}}'")
    a.add_argument("--conv", choices=["flat", "taps"], default="flat",
                   help="convolution view (flat: C_out x C_in*k, taps: pooled per-tap spectra)")
    out = a.add_mutually_exclusive_group()
    out.add_argument("--csv", type=Path, metavar="F", help="write the full table as CSV")
    out.add_argument("--json", type=Path, metavar="F", help="write the full table as JSON")
    a.add_argument("--plots", type=Path, metavar="DIR",
                   help="write one ESD figure (PNG) per fitted layer into DIR")
    a.set_defaults(func=_analyze)

    p = sub.add_parser("prune", help="prune and write a checkpoint plus a JSON report",
                       description="Prune every analysable layer with a PrunePolicy; write the "
                                   "pruned checkpoint and a JSON report.")
    common(p)
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="the pruned checkpoint to write")
    p.add_argument("--report", type=Path, metavar="F",
                   help="the JSON report (default: FILE with the suffix .json)")
    p.add_argument("--keep-fraction", type=_fraction, default=0.45, metavar="F",
                   help="fraction of the bulk kept (0.45)")
    p.add_argument("--selector", choices=selectors, default="bema",
                   help="rank selector deciding the spikes (bema)")
    p.add_argument("--selector-opts", default="{}", metavar="JSON",
                   help="options of a non-BEMA selector, e.g. '{\"k\": 20}'")
    p.add_argument("--action", choices=list(ACTIONS), default="factorize",
                   help="what to do with each layer (factorize)")
    p.add_argument("--min-rank", type=int, default=1, help="least rank of any layer (1)")
    p.add_argument("--head", default="auto",
                   help="layers keeping their output width: auto, none, or comma-separated names")
    p.add_argument("--layers", nargs="+", metavar="NAME", help="prune only these layers")
    p.add_argument("--split-view", choices=["product", "factors"], default="product",
                   help="how layers split earlier are read (product W2 W1)")
    p.add_argument("--shrink-factor", type=float, default=0.5, help="factor of --action shrink")
    p.add_argument("--seed", type=int, default=0, help="seed of --action random_bulk (0)")
    p.set_defaults(func=_prune)
    return top


# --------------------------------------------------------------------------- helpers


def _progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def _free(path: Path, overwrite: bool, what: str) -> Path:
    """``path`` if it can be written (absent, or ``overwrite``), else a ``ValueError``."""
    if path.exists() and path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory")
    if path.exists() and not overwrite:
        raise ValueError(f"{what} {str(path)!r} exists; pass --overwrite to replace it")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {str(path)!r}: {str(parent)!r} is not a directory")
    return path


def _load(args):
    from .train import load_model, resolve_device

    if not Path(args.model).exists():
        raise ValueError(f"no such file: {args.model!r}")
    kwargs = _json_object(args.arch_kwargs, "--arch-kwargs")
    model, info = load_model(args.model, args.arch, arch_kwargs=kwargs)
    device = resolve_device(args.device)
    model.to(device).eval()
    return model, info, device


def _accuracy(model, name: str, device) -> dict:
    from .data import load_dataset
    from .train import evaluate

    data = load_dataset(name)
    test = (data.test_x, data.test_y)
    try:
        loss, acc = evaluate(model, test, device=device)
    except (RuntimeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the model cannot be evaluated on {name} test images of shape "
                         f"{tuple(data.test_x.shape[1:])}: {first}") from None
    return {"test_loss": loss, "test_acc": acc, "n": len(data.test_y)}


def _plain(value):
    """JSON-friendly: NaN and pandas' NA become null, tuples lists, numpy scalars Python ones."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NA:
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(df) -> list[dict]:
    return [_plain(r) for r in df.to_dict("records")]


def _print_table(df, columns) -> None:
    import pandas as pd

    shown = df[[c for c in columns if c in df.columns]].copy()
    if "reason" in shown:
        shown["reason"] = shown["reason"].map(
            lambda r: "" if r is None or (isinstance(r, float) and math.isnan(r)) or r is pd.NA
            else (r if len(r) <= 70 else r[:67] + "..."))
    with pd.option_context("display.max_rows", None, "display.max_columns", None,
                           "display.width", 250, "display.float_format", "{:.4g}".format):
        print(shown.to_string(index=False))


def _write_text(path: Path, text: str) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "model")


# --------------------------------------------------------------------------- commands


def _analyze(args) -> int:
    from .prune import prune_model
    from .spectra import analyze

    if args.csv is not None:
        _free(args.csv, args.overwrite, "--csv")
    if args.json is not None:
        _free(args.json, args.overwrite, "--json")
    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise ValueError(f"--plots {str(args.plots)!r} exists and is not a directory")
    opts = _json_object(args.selector_opts, "--selector-opts")
    model, info, device = _load(args)
    fits = {} if args.plots is not None else None
    df = analyze(model, selectors=args.selectors, selector_opts=opts, conv=args.conv,
                 alpha=args.alpha, beta=args.beta, gof=args.gof if args.gof is not None else 1.0,
                 paper_exact=args.paper_exact, progress=_progress(args), fits=fits)
    accuracy = None
    if args.data:
        accuracy = {"before": _accuracy(model, args.data, device)}
        pruned = copy.deepcopy(model)
        prune_model(pruned, progress=_progress(args))
        accuracy["after_default_prune"] = _accuracy(pruned, args.data, device)
    figures = {}
    if fits:
        figures = {name: args.plots / f"{_safe_name(name)}.png" for name in fits}
        clash = [str(p) for p in figures.values() if p.exists()]
        if clash and not args.overwrite:
            raise ValueError(f"--plots: {len(clash)} figure(s) exist already (e.g. {clash[0]!r}); "
                             "pass --overwrite to replace them")
    print(f"# {args.model}: {info['kind']} of {info['arch']['factory']}, device {device}, "
          f"{int((df.status == 'ok').sum())} of {len(df)} layers analysed")
    _print_table(df, _TABLE_COLUMNS + [c for c in df.columns if c.startswith("rank_")])
    if accuracy:
        b, a = accuracy["before"], accuracy["after_default_prune"]
        print(f"# {args.data} test accuracy: {b['test_acc']:.2f} % as given, {a['test_acc']:.2f} % "
              "after prune_model with the default policy (not saved)")
    if args.csv is not None:
        _write_text(args.csv, df.assign(shape=df["shape"].map(lambda s: f"{s[0]}x{s[1]}"))
                    .to_csv(index=False))
    if args.json is not None:
        _write_text(args.json, json.dumps({"model": str(args.model), "arch": info["arch"],
                                           "device": str(device), "layers": _records(df),
                                           "accuracy": _plain(accuracy)}, indent=2) + "\n")
    if figures:
        _plots(fits, figures, df)
    return 0


def _plots(fits: dict, figures: dict, df) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import esd_grid

    rows = df.set_index("name")
    next(iter(figures.values())).parent.mkdir(parents=True, exist_ok=True)
    for name, fit in fits.items():
        r = rows.loc[name]
        title = f"{name} ({r['shape'][0]}x{r['shape'][1]}), GoF {fit.gof:.3g}"
        fig = esd_grid({name: fit}, {name: title})
        fig.savefig(figures[name], dpi=90)
        plt.close(fig)


def _prune(args) -> int:
    from .prune import PrunePolicy, prune_model
    from .train import save_checkpoint

    out = _free(args.out, args.overwrite, "--out")
    report_path = args.report
    if report_path is None:
        report_path = out.with_suffix(".json")
        if report_path == out:
            report_path = out.with_name(out.name + ".report.json")
    if report_path.resolve() == out.resolve():
        raise ValueError("--report and --out must be different files")
    _free(report_path, args.overwrite, "--report")
    head = args.head
    head = None if head.lower() == "none" else ("auto" if head == "auto" else
                                                [h for h in head.split(",") if h])
    policy = PrunePolicy(selector=args.selector, selector_opts=_json_object(args.selector_opts,
                         "--selector-opts"), keep_fraction=args.keep_fraction, action=args.action,
                         gof=args.gof, alpha=args.alpha, beta=args.beta, min_rank=args.min_rank,
                         head=head, layers=args.layers, split_view=args.split_view,
                         paper_exact=args.paper_exact, shrink_factor=args.shrink_factor,
                         seed=args.seed)
    model, info, device = _load(args)
    accuracy = {"before": _accuracy(model, args.data, device)} if args.data else None
    report = prune_model(model, policy, progress=_progress(args))
    if accuracy is not None:
        accuracy["after"] = _accuracy(model, args.data, device)
    record = {"model": str(args.model), "arch": info["arch"], "device": str(device),
              "checkpoint": str(out), "policy": _plain(policy.to_dict()),
              "params_before": report.params_before, "params_after": report.params_after,
              "layers": _records(report.layers.drop(columns=["seconds"])),
              "skipped": report.skipped, "accuracy": _plain(accuracy),
              "seconds": report.seconds}
    text = json.dumps(_plain(record), indent=2) + "\n"
    save_checkpoint(model, out, overwrite=args.overwrite, arch=info["arch"],
                    pruned_from=str(args.model), policy=_plain(policy.to_dict()),
                    params_before=report.params_before, params_after=report.params_after)
    try:
        _write_text(report_path, text)
    except BaseException:
        out.unlink(missing_ok=True)  # both files or neither
        raise
    _print_table(report.layers, _PRUNE_COLUMNS)
    ratio = report.params_after / report.params_before if report.params_before else float("nan")
    print(f"# parameters {report.params_before} -> {report.params_after} ({100 * ratio:.1f} %); "
          f"{len(report.edits)} of {len(report.layers)} layers changed")
    if accuracy is not None:
        print(f"# {args.data} test accuracy: {accuracy['before']['test_acc']:.2f} % before, "
              f"{accuracy['after']['test_acc']:.2f} % after")
    print(f"# wrote {out} and {report_path}")
    return 0


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: analyze or prune (see rmtlib --help)")
        return args.func(args)
    except UsageError as exc:
        print(f"rmtlib: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"rmtlib: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rmtlib: interrupted", file=sys.stderr)
        return 130
