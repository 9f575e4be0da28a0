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
import os
import sys

import numpy as np
from tqdm import tqdm

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from toy import (cli, datasets, files, mdn, nets, plots, preprocess,
                 train_custom_loop)

TEST_POINTS = 10000


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_training_arguments(parser, train_points=2500, hidden=[24], k=24,
                               epoch=6000, seed=0, out=os.path.join('results', 'otoro'))
    parser.add_argument('--least-squares-hidden', '--mse-hidden', type=cli.positive,
                        nargs='+', default=[20], metavar='UNITS',
                        help='hidden units of the least-squares nets, one number '
                             'per layer')
    args = parser.parse_args(argv)
    args.hidden, args.least_squares_hidden = map(
        nets.hidden_option, (args.hidden, args.least_squares_hidden))
    return cli.check_resources(parser, args, memory_needed,
                               '--hidden, --least-squares-hidden, -k or '
                               '--train-points')


def memory_needed(args):
    """Rough upper estimate of a run's bytes: the MDN's and the two
    least-squares nets' training (cli.training_bytes) over the most rows at
    once (full-batch, or the test points)."""
    rows = max(args.train_points, TEST_POINTS)
    points = args.train_points + TEST_POINTS
    return (cli.training_bytes(nets.hidden_widths(args.hidden),
                               mdn.MDN.head_size(args.k, 1), rows, points)
            + 2 * cli.training_bytes(nets.hidden_widths(args.least_squares_hidden),
                                     1, rows, points))


def fit_least_squares(model, x, t, schedule):
    """Fit on standardised (x, t) (N,) each; returns predict(x (M,)) -> (M,)."""
    scaler = preprocess.Standardizer(x[:, None], t[:, None])
    xs, ts = scaler.inputs(x[:, None]), scaler.targets(t[:, None])
    train_custom_loop.fit(model, xs, ts, xs, ts, **dict(schedule, lr=1e-2, lr_final=1e-4))
    model.to_device('@numpy')

    def predict(x_new):
        with chainer.no_backprop_mode():
            z = model.forward(scaler.inputs(np.asarray(x_new)[:, None])).array
        return scaler.untarget(z)[:, 0]
    return predict


def main(argv=None):
    args = parse_args(argv)
    seeds = np.random.SeedSequence(args.seed).spawn(6)
    (x, y), (x_test, y_test) = datasets.train_test('otoro', seeds, args.train_points,
                                                   TEST_POINTS)
    schedule = dict(epochs=args.epoch, lr=1e-3, lr_final=1e-3, eval_every=50,
                    seed=args.seed, device=args.device)

    # The post's forward and inverse least-squares fits.
    forward = nets.LeastSquares(hidden=args.least_squares_hidden, activation='tanh',
                                rng=np.random.default_rng(seeds[2]))
    inverse = nets.LeastSquares(hidden=args.least_squares_hidden, activation='tanh',
                                rng=np.random.default_rng(seeds[3]))
    net = mdn.MDN(hidden=args.hidden, k=args.k, activation='tanh',
                  rng=np.random.default_rng(seeds[4]))
    # On a terminal only, leaving no line behind: an error stays one line.
    with tqdm(total=3 * args.epoch, desc='training', unit='epoch', leave=False,
              disable=None, dynamic_ncols=True) as bar:
        schedule['progress'] = bar.update
        bar.set_postfix_str('forward least squares')
        forward = fit_least_squares(forward, y[:, 0], x[:, 0], schedule)
        bar.set_postfix_str('inverse least squares')
        inverse = fit_least_squares(inverse, x[:, 0], y[:, 0], schedule)
        bar.set_postfix_str('MDN')
        info = train_custom_loop.fit(net, x, y, x, y, **schedule)
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
           title='inverse by an MDN, K = {}'.format(args.k))
    for ax in axes[0]:
        ax.legend(loc='upper left', fontsize=8, markerscale=3)
    plots.save(fig, os.path.join(args.out, 'otoro-fits.png'))

    nll = train_custom_loop.heldout_nll(net, x_test, y_test)
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
        'config': cli.recorded_options(args)}
    files.write_metrics(os.path.join(args.out, 'otoro-metrics.json'), metrics,
                        ('mdn_test_nll', 'bayes_limit', 'gap', 'forward_mse_test',
                         'inverse_mse_test'))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_main(main))
