"""The mixture-count sweep's tables (experiments.sweep_mixtures): its rows
parsed, the K-mixture floors kept in a file, and summary.md."""
import functools
import json
import math
import os

import numpy as np
from tqdm import tqdm

from toy import datasets, files, floor

#: EM iterations per start of the K-floors: EM creeps, and 2,000 take 4x as
#: long for floors about 1e-3 nats lower (worldmodels K = 5: 0.0787 against
#: 0.0776), a tenth of the gaps they are set against.
FLOOR_ITERATIONS = 500



def parse(row):
    """A results.csv row with its numbers parsed; ValueError if it is not one."""
    parsed = dict(row, k=int(row['k']), seed=int(row['seed']),
                  mse=float(row['mse']), train_seconds=float(row['train_seconds']))
    if row['model'] == 'mdn':
        parsed['nll'] = float(row['nll'])
    bad = [f for f in ('nll', 'mse') if f in parsed and not np.isfinite(parsed[f])]
    if bad:
        raise ValueError('non-finite score ({})'.format(', '.join(
            '{} {}'.format(f, parsed[f]) for f in bad)))
    return parsed


def select(rows, name, k, field='nll', model='mdn'):
    return np.array([r[field] for r in rows if r['dataset'] == name
                     and r['model'] == model and r['k'] == k])


def best_k(rows, name, ks):
    means = [(select(rows, name, k).mean(), k) for k in ks if len(select(rows, name, k))]
    return min(means)[1] if means else None


def floors(cfg):
    """{(dataset, K): its K-mixture floor} in nats above the Bayes limit
    (floor.mixture_floor), for cfg's problems and K; {} without floors. Each
    is computed once and kept in cfg.floor_path."""
    if not cfg.floors:
        return {}
    path = cfg.floor_path
    try:
        with open(path) as f:
            kept = json.load(f)
    except (OSError, ValueError):  # none yet, or damaged: computed again
        kept = {}
    kept = kept if isinstance(kept, dict) else {}
    found = {}
    for name in cfg.dataset:
        for k in cfg.k:
            label = '{}-{}-k{}'.format(name, cfg.direction, k)
            value = kept.get(label)
            if not (isinstance(value, float) and math.isfinite(value) and value >= 0):
                with tqdm(desc='{}-component mixture floor of {} (kept in {})'.format(
                        k, name, path), unit='input', leave=False, disable=None,
                        dynamic_ncols=True) as bar:
                    value = kept[label] = floor.mixture_floor(
                        name, k, cfg.direction, iterations=FLOOR_ITERATIONS,
                        progress=functools.partial(_advance, bar))
                os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
                files.write_json(path, kept)  # each as it comes: they are slow
            found[name, k] = value
    return found


def mean_spread(values, unit, mean='{:.4f}', spread='{:.4f}'):
    """'mean ± std' of values; one value alone has no spread to show."""
    if len(values) == 1:
        return (mean + ' (one {})').format(values[0], unit)
    return (mean + ' ± ' + spread).format(np.mean(values), np.std(values))


def _advance(bar, done, total):
    bar.total, bar.n = total, done
    bar.refresh()


def write_summary(cfg, rows, failed, floor_of, settings):
    """cfg's summary.md: per problem, a table of its K (rows: parsed rows of
    cfg's grid), their K-floors (floor_of: `floors`), the least-squares
    baseline and the failed runs ((key, reason) pairs); `settings` is the
    sentence that names the config."""
    lines = ['# Mixture-count sweep ({} direction)'.format(cfg.direction), '',
             "Held-out NLL in nats per point, in the target's original units, mean ± "
             'std over seeds on {0.test_points} test points; the gap is to the exact '
             'Bayes limit H(target | input). The K-floor is the lowest gap any '
             'K-component mixture can reach (fitted to the true density at each '
             'input, `floor.mixture_floor`): the mixture\'s share of the gap; the '
             'rest is the network\'s. Models chosen on {0.val_points} '
             'validation points; trained on {0.train_points}. {1}.'.format(
                 cfg, settings), '']
    for name in cfg.dataset:
        bayes, gaussian = datasets.limits(name, cfg.direction)
        table = []
        for k in cfg.k:
            nll, mse, sec = (select(rows, name, k, f) for f in ('nll', 'mse', 'train_seconds'))
            if not len(nll):
                continue
            gap = nll.mean() - bayes
            shares = (['{:.4f}'.format(floor_of[name, k]),
                       '{:+.4f}'.format(gap - floor_of[name, k])]
                      if (name, k) in floor_of else ['–', '–'])
            table.append([k, len(nll), mean_spread(nll, 'seed'), '{:+.4f}'.format(gap)]
                         + shares + ['{:+.4f}'.format(nll.mean() - gaussian),
                                     '{:.4g}'.format(mse.mean()),
                                     '{:.1f}'.format(sec.mean())])
        lines += ['## ' + name, '', 'Bayes limit {:.4f} nats; single-Gaussian limit '
                  '{:.4f} nats.'.format(bayes, gaussian), '']
        lines += files.markdown_table(
            ['K', 'runs', 'held-out NLL', 'gap to Bayes', 'K-floor (mixture)', 'network',
             'gap to 1-Gaussian', 'mixture-mean MSE', 'train s'], table, 'r' * 9)
        k, mse = best_k(rows, name, cfg.k), select(rows, name, 0, 'mse', 'least_squares')
        lines += [''] + (['Best K = {} (mean held-out NLL {:.4f}, gap {:+.4f} nats).'.format(
            k, select(rows, name, k).mean(), select(rows, name, k).mean() - bayes)]
            if k else [])
        lines += ['Least-squares baseline (LeastSquares, same net): held-out MSE in '
                  'target units squared {}{}.'.format(
                      mean_spread(mse, 'run', '{:.4g}', '{:.2g}'),
                      ', {} runs'.format(len(mse)) if len(mse) > 1 else '')] if len(mse) else []
        lines += ['Failed, excluded from the means and the best K (rerun with '
                  '--retry-failed): `{}`: {}'.format(*f) for f in failed
                  if f[0].startswith(name + '-')] + ['']
    with files.atomic_write(cfg.summary_path) as f:
        f.write('\n'.join(lines))

