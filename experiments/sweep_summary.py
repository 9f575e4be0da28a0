"""The mixture-count sweep's tables (experiments.sweep_mixtures): its rows
parsed, the K-mixture floors kept in a file, and summary.md."""
import functools
import json
import math
import os

import numpy as np
from tqdm import tqdm

from toy import datasets, files, floor



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
    is computed once and kept in cfg.floor_path (again if
    cfg.recompute_floors)."""
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
            value = None if cfg.recompute_floors else kept.get(label)
            if not (isinstance(value, float) and math.isfinite(value) and value >= 0):
                with tqdm(desc='{}-component mixture floor of {} (kept in {})'.format(
                        k, name, path), unit='input', leave=False, disable=None,
                        dynamic_ncols=True) as bar:
                    value = kept[label] = floor.mixture_floor(
                        name, k, cfg.direction, progress=functools.partial(_advance, bar))
                os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
                files.write_json(path, kept)  # each as it comes: they are slow
            found[name, k] = value
    return found


def wall_times(out, keys):
    """The invocations' records in out/WALL_TIME, oldest first: the dicts
    that hold every one of `keys` ([] if none is readable)."""
    try:
        with open(os.path.join(out, WALL_TIME)) as f:
            wall = json.load(f)
    except (OSError, ValueError):
        return []
    # The first version kept one record, not a list.
    wall = wall if isinstance(wall, list) else [wall]
    return [w for w in wall if isinstance(w, dict) and set(keys) <= set(w)]


def mean_spread(values, unit, mean='{:.4f}', spread='{:.4f}'):
    """'mean ± std' of values; one value alone has no spread to show."""
    if len(values) == 1:
        return (mean + ' (one {})').format(values[0], unit)
    return (mean + ' ± ' + spread).format(np.mean(values), np.std(values))


def _advance(bar, done, total):
    bar.total, bar.n = total, done
    bar.refresh()


#: A run whose gap is more than this many standard errors below its K-floor
#: is flagged in the summary: a floor is the KL of a concrete mixture, an
#: upper bound, so a network below it proves the floor wrong. A gap of
#: size g measured on n test points has a standard error of about
#: sqrt(2 g / n) (the per-point log ratio log p/q has a variance of about
#: twice its mean, the KL, when q is near p).
BELOW_FLOOR = 3
#: "Enough components": the smallest K whose runs' mean gap is within this
#: many nats of the largest K's floor.
ENOUGH = 0.01
#: Where a sweep keeps the wall time of each invocation that trained.
WALL_TIME = 'wall_time.json'
#: What a sweep's record of it holds.
RECORD = ('seconds', 'trained', 'runs', 'jobs', 'device')
#: The network's share (its gap less the K-floor) the default sweep aims at,
#: at every K: below it, a difference between two K is the mixture's.
SHARE = 0.02


def gaps(rows, name, k, bayes_of):
    """The gaps of problem `name`'s K = k runs (an array over seeds): each
    run's held-out NLL above the Bayes NLL of its own test points
    (bayes_of: {(dataset, seed): it}), in nats per point. The same points
    score every K, so their sampling error (0.01 nats and more against the
    Bayes limit's expectation) cancels."""
    return np.array([r['nll'] - bayes_of[r['dataset'], r['seed']] for r in rows
                     if r['dataset'] == name and r['model'] == 'mdn' and r['k'] == k])


def below_floor(rows, name, bayes_of, floor_of, test_points):
    """[(K, seed, gap, floor)] of the runs of `name` whose gap is more than
    BELOW_FLOOR standard errors below their K-floor, on test_points points."""
    flagged = []
    for r in rows:
        if r['dataset'] != name or r['model'] != 'mdn' or (name, r['k']) not in floor_of:
            continue
        gap, floor_k = r['nll'] - bayes_of[name, r['seed']], floor_of[name, r['k']]
        if gap < floor_k - BELOW_FLOOR * math.sqrt(2 * max(gap, floor_k) / test_points):
            flagged.append((r['k'], r['seed'], gap, floor_k))
    return flagged


def enough_components(ks, mean_gaps, last_floor):
    """The smallest K of ks whose mean gap (mean_gaps, one per K) is within
    ENOUGH nats of last_floor (the largest K's floor); None if none is."""
    return next((k for k, gap in zip(ks, mean_gaps) if gap <= last_floor + ENOUGH), None)


def write_summary(cfg, rows, failed, floor_of, settings, bayes_of):
    """cfg's summary.md: per problem, a table of its K (rows: parsed rows of
    cfg's grid), their K-floors (floor_of: `floors`), the least-squares
    baseline, the failed runs ((key, reason) pairs), the runs below their
    floor and the "enough components" answer; gaps are to the Bayes NLL of
    each run's test points (bayes_of: see `gaps`); `settings` is the
    sentence that names the config."""
    lines = ['# Mixture-count sweep ({} direction)'.format(cfg.direction), '',
             "Held-out NLL in nats per point, in the target's original units, mean ± "
             'std over seeds on {0.test_points} test points. The gap is to the Bayes '
             'NLL of the same test points (their mean of -log p(target | input) under '
             'the true density; the exact Bayes limit H(target | input) is its '
             'expectation). The K-floor is the lowest gap any K-component mixture can '
             'reach (fitted to the true density at each input, '
             '`floor.mixture_floor`): the mixture\'s share of the gap; the rest is '
             'the network\'s. Models chosen on {0.val_points} validation points; '
             'trained on {0.train_points}. {1}.'.format(cfg, settings), '']
    wall = wall_times(cfg.out, RECORD)
    if wall:
        lines += ['Wall time of each invocation that trained (training, scoring and '
                  'figures): ' + '; '.join(
                      '{:.1f} min for {} of the {} runs, {} worker(s) on device {}{}'.format(
                          w['seconds'] / 60, w['trained'], w['runs'], w['jobs'], w['device'],
                          ', populations of up to {}'.format(w['population'])
                          if w.get('population', 1) > 1 else '') for w in wall) + '.', '']
    for name in cfg.dataset:
        bayes, gaussian = datasets.limits(name, cfg.direction)
        table, ks, mean_gaps = [], [], []
        for k in cfg.k:
            nll, mse, sec = (select(rows, name, k, f) for f in ('nll', 'mse', 'train_seconds'))
            if not len(nll):
                continue
            gap = gaps(rows, name, k, bayes_of).mean()
            ks.append(k)
            mean_gaps.append(gap)
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
            k, select(rows, name, k).mean(), mean_gaps[ks.index(k)])] if k else [])
        # One K answers no question of how many are enough.
        if len(cfg.k) > 1 and ks and (name, cfg.k[-1]) in floor_of:
            last = floor_of[name, cfg.k[-1]]
            enough = enough_components(ks, mean_gaps, last)
            # What the mixture alone needs: the answer a better network could give.
            by_floor = enough_components(cfg.k, [floor_of[name, k] for k in cfg.k], last)
            lines += ['Enough components: {} (the smallest K whose mean gap is within {} '
                      'nats of the K = {} floor, {:.4f}; by the floors alone, K = {}).'
                      .format('K = {}'.format(enough) if enough else 'no K', ENOUGH,
                              cfg.k[-1], last, by_floor)]
        lines += ['Least-squares baseline (LeastSquares, same net): held-out MSE in '
                  'target units squared {}{}.'.format(
                      mean_spread(mse, 'run', '{:.4g}', '{:.2g}'),
                      ', {} runs'.format(len(mse)) if len(mse) > 1 else '')] if len(mse) else []
        lines += ['Failed, excluded from the means and the best K (rerun with '
                  '--retry-failed): `{}`: {}'.format(*f) for f in failed
                  if f[0].startswith(name + '-')]
        lines += ['**Below its K-floor** by more than {} standard errors, so the floor '
                  'is wrong there: K = {}, seed {}: gap {:+.4f}, floor {:.4f}.'.format(
                      BELOW_FLOOR, *run) for run in below_floor(
                          rows, name, bayes_of, floor_of, cfg.test_points)] + ['']
    with files.atomic_write(cfg.summary_path) as f:
        f.write('\n'.join(lines))
