"""David Ha's 2015 MDN post (blog.otoro.net), in Chainer.

Data: y ~ U(-10.5, 10.5), x = 7 sin(0.75 y) + 0.5 y + N(0, 1). Three fits:

1. forward, y -> x, by least squares: single-valued, so the mean is right;
2. inverse, x -> y, by least squares: multi-valued, so it averages branches;
   both least-squares nets see standardised data (unscaled, |y| up to 10.5
   saturates their tanh units at LeCun initialisation and the fit stalls);
3. inverse by an MDN with 24 tanh hidden units and K = 24, full-batch Adam
   at its default step size, unstandardised data as in the post, with 10
   samples drawn per x on a grid that runs past the data.

Figures and metrics.json go to results/otoro/.
"""
import json
import os
import sys

import numpy as np
from tqdm import tqdm

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from toy import cli, datasets, files, mdn, plots, train

TEST_POINTS = 10000


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--points', type=cli.positive, default=2500,
                        help='training points (default: 2500)')
    parser.add_argument('--mse-hidden', type=cli.positive, default=20,
                        help='tanh hidden units of the least-squares nets '
                             '(default: 20)')
    parser.add_argument('--hidden', type=cli.positive, default=24,
                        help='tanh hidden units of the MDN (default: 24)')
    parser.add_argument('--mixtures', '-k', type=cli.positive, default=24,
                        help='MDN mixture components (default: 24)')
    parser.add_argument('--epochs', '-e', type=cli.positive, default=6000,
                        help='epochs of full-batch Adam, one step each, per net '
                             '(default: 6000)')
    parser.add_argument('--seed', type=cli.seed, default=0,
                        help='seed of data, weights and samples (default: 0)')
    parser.add_argument('--out', '-o', default=os.path.join('results', 'otoro'),
                        help='output directory (default: results/otoro)')
    cli.add_device_arguments(parser)
    args = parser.parse_args(argv)
    cli.check_out(parser, args.out)
    args.device = cli.get_device(parser, args.device)
    cli.check_memory(parser, memory_needed(args), args.device,
                     '--hidden, --mse-hidden, --mixtures/-k or --points')
    return args


def memory_needed(args):
    """Rough upper estimate of a run's bytes: the largest set of activations
    at once (full-batch training, the test points, or the samples)."""
    rows = max(args.points, TEST_POINTS)
    width = max(args.hidden + 8 * 3 * args.mixtures, args.mse_hidden)
    return 4 * rows * 2 * width


def fit_least_squares(model, x, t, schedule):
    """Fit on standardised (x, t) (N,) each; returns predict(x (M,)) -> (M,)."""
    scaler = train.Standardizer(x[:, None], t[:, None])
    xs, ts = scaler.inputs(x[:, None]), scaler.targets(t[:, None])
    train.fit(model, xs, ts, xs, ts, **dict(schedule, lr=1e-2, lr_final=1e-4))
    model.to_device('@numpy')

    def predict(x_new):
        with chainer.no_backprop_mode():
            z = model.forward(scaler.inputs(np.asarray(x_new)[:, None])).array
        return scaler.untarget(z)[:, 0]
    return predict


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    seeds = np.random.SeedSequence(args.seed).spawn(6)
    x, y = datasets.otoro(args.points, np.random.default_rng(seeds[0]))
    x_test, y_test = datasets.otoro(TEST_POINTS, np.random.default_rng(seeds[1]))
    schedule = dict(epochs=args.epochs, lr=1e-3, lr_final=1e-3, eval_every=50,
                    seed=args.seed, device=args.device)

    # The post's forward and inverse least-squares fits.
    forward = mdn.LeastSquares(hidden=args.mse_hidden, activation='tanh',
                               rng=np.random.default_rng(seeds[2]))
    inverse = mdn.LeastSquares(hidden=args.mse_hidden, activation='tanh',
                               rng=np.random.default_rng(seeds[3]))
    net = mdn.MDN(hidden=args.hidden, k=args.mixtures, activation='tanh',
                  rng=np.random.default_rng(seeds[4]))
    # On a terminal only, leaving no line behind: an error stays one line.
    with tqdm(total=3 * args.epochs, desc='training', unit='epoch', leave=False,
              disable=None, dynamic_ncols=True) as bar:
        schedule['progress'] = bar.update
        bar.set_postfix_str('forward least squares')
        forward = fit_least_squares(forward, y[:, 0], x[:, 0], schedule)
        bar.set_postfix_str('inverse least squares')
        inverse = fit_least_squares(inverse, x[:, 0], y[:, 0], schedule)
        bar.set_postfix_str('MDN')
        info = train.fit(net, x, y, x, y, **schedule)
        net.to_device('@numpy')

    y_grid = np.linspace(-10.5, 10.5, 300, dtype=np.float32)
    x_grid = np.arange(-15, 15, 0.1, dtype=np.float32)
    samples = net.sample(x_grid[:, None], n=10,
                         rng=np.random.RandomState(args.seed))

    fig, axes = plots.subplots(1, 3, width=4.3, height=3.8)
    ax = axes[0][0]
    plots.scatter_data(ax, y, x, s=5, alpha=0.5)
    ax.plot(y_grid, forward(y_grid), 'r-', lw=2, label='least squares')
    ax.set(xlabel='y (input)', ylabel='x (target)',
           title='forward y -> x by least squares: fits')
    ax = axes[0][1]
    plots.scatter_data(ax, x, y, s=5, alpha=0.5)
    ax.plot(x_grid, inverse(x_grid), 'r-', lw=2, label='least squares')
    ax.set(xlabel='x (input)', ylabel='y (target)',
           title='inverse x -> y by least squares: averages')
    ax = axes[0][2]
    plots.scatter_data(ax, x, y, s=5, alpha=0.5)
    plots.scatter_samples(ax, x_grid, samples, label='MDN: 10 samples per x',
                          s=3, alpha=0.4)
    ax.set(xlabel='x (input)', ylabel='y (target)',
           title='inverse by an MDN, K = {}'.format(args.mixtures))
    for ax in axes[0]:
        ax.legend(loc='upper left', fontsize=8, markerscale=3)
    plots.save(fig, os.path.join(args.out, 'otoro-fits.png'))

    nll = mdn.heldout_nll(net, x_test, y_test)
    bayes = datasets.bayes_limit('otoro')
    metrics = {
        'mdn_test_nll': nll, 'bayes_limit': bayes, 'gap': nll - bayes,
        'gaussian_limit': datasets.gaussian_limit('otoro'),
        'forward_mse_test': float(np.mean((forward(y_test[:, 0])
                                           - x_test[:, 0]) ** 2)),
        'inverse_mse_test': float(np.mean((inverse(x_test[:, 0])
                                           - y_test[:, 0]) ** 2)),
        'mdn_best_epoch': info['best_epoch'],
        'units': 'nats per point; y in [-10.5, 10.5]; MSE in squared units',
        'config': {k: v for k, v in vars(args).items()
                   if k not in ('device', 'out')}}
    files.write_json(os.path.join(args.out, 'otoro-metrics.json'), metrics)
    print(json.dumps({k: round(metrics[k], 4) for k in
                      ('mdn_test_nll', 'bayes_limit', 'gap', 'forward_mse_test',
                       'inverse_mse_test')}))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except train.Diverged as e:
        sys.exit('{}: error: {}'.format(os.path.basename(__file__), e))
