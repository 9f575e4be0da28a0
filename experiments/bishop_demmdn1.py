"""Bishop's MDN demo, after Netlab's demmdn1: the inverse of a sinusoid.

Data (Bishop 1994; PRML section 5.6): t ~ U(0, 1), x = t + 0.3 sin(2 pi t)
+ U(-0.1, 0.1); the network predicts t from x, which has up to three
solutions. As in demmdn1: 300 points, 5 tanh hidden units, 3 Gaussian
components, and a net of the same size trained by least squares for
comparison. Netlab
trains by scaled conjugate gradients; here full-batch Adam with a decaying
step, keeping the parameters with the lowest training NLL (demmdn1 has no
validation set). Figures and metrics.json go to results/bishop/.
"""
import os
import sys

import numpy as np
from tqdm import tqdm

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from toy import cli, datasets, files, mdn, mixture, nets, plots, train_custom_loop

TEST_POINTS = 10000
GRID = 400


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_training_arguments(parser, train_points=300, hidden=[5], k=3, epoch=3000,
                               seed=0, out=os.path.join('results', 'bishop'))
    args = parser.parse_args(argv)
    args.hidden = nets.hidden_option(args.hidden)
    return cli.check_resources(parser, args, memory_needed,
                               '--hidden, -k or --train-points')


def memory_needed(args):
    """Rough upper estimate of a run's bytes: the MDN's and the least-squares
    net's training (cli.training_bytes) over the most rows at once
    (full-batch, the test points or the grid), and the density on the grid."""
    widths = nets.hidden_widths(args.hidden)
    rows = max(args.train_points, TEST_POINTS, GRID)
    points = args.train_points + TEST_POINTS
    return (cli.training_bytes(widths, mdn.MDN.head_size(args.k, 1), rows, points)
            + cli.training_bytes(widths, 1, rows, points)
            + 16 * GRID * GRID * args.k)


def density_figure(x, t, x_grid, t_grid, learned, true, k):
    """The MDN's p(t|x) beside the true one, (len(x_grid), len(t_grid)) each,
    as heat maps on one colour scale, the training data (x, t) over them.
    Images, not contours: the true density jumps where a branch of the
    inverse ends, and contour lines would run along those jumps."""
    fig, axes = plots.subplots(1, 2, width=5.0, height=4.2)
    vmax = np.percentile(true, 99)
    for ax, density, title in ((axes[0][0], learned, 'MDN p(t|x), K = {}'.format(k)),
                               (axes[0][1], true, 'true p(t|x)')):
        plots.density_image(ax, x_grid, t_grid, density, 'x (input)', 't (target)',
                            title, vmax=vmax)
        plots.scatter_data(ax, x, t, s=4, c='w', alpha=0.6, label='training data')
        ax.set(xlim=(x_grid[0], x_grid[-1]), ylim=(t_grid[0], t_grid[-1]))
    axes[0][0].legend(loc='upper left', fontsize=8, markerscale=2)
    return fig


def main(argv=None):
    args = parse_args(argv)
    seeds = np.random.SeedSequence(args.seed).spawn(4)
    net = mdn.MDN(hidden=args.hidden, k=args.k, activation='tanh',
                  rng=np.random.default_rng(seeds[2]))
    least_squares = nets.LeastSquares(hidden=args.hidden, activation='tanh',
                                      rng=np.random.default_rng(seeds[3]))
    (x, t), (x_test, t_test) = datasets.train_test('bishop', seeds, args.train_points,
                                                   TEST_POINTS)
    # On a terminal only, leaving no line behind: an error stays one line.
    with tqdm(total=2 * args.epoch, desc='training the MDN, then least squares',
              unit='epoch', leave=False, disable=None, dynamic_ncols=True) as bar:
        for model in (net, least_squares):
            train_custom_loop.fit(model, x, t, x, t, epochs=args.epoch, lr=0.03,
                                  lr_final=3e-4, eval_every=10, seed=args.seed,
                                  device=args.device, progress=bar.update)
            model.to_device('@numpy')

    x_grid = np.linspace(-0.1, 1.1, GRID, dtype=np.float32)
    t_grid = np.linspace(-0.1, 1.1, GRID)
    logits, mu, ln_var = net.mixture(x_grid[:, None])
    with chainer.no_backprop_mode():
        least_squares_mean = least_squares.forward(x_grid[:, None]).array[:, 0]
    mode = mixture.most_probable_mean(logits, mu)[:, 0]
    bayes = datasets.bayes_limit('bishop')

    fig, axes = plots.subplots(1, 1, width=6.0, height=4.6)
    ax = axes[0][0]
    plots.scatter_data(ax, x, t, s=10, alpha=0.8)
    ax.plot(x_grid, least_squares_mean, 'b-', lw=2, label='least squares: mean')
    ax.plot(x_grid, mode, 'r.', ms=3,
            label='MDN: centre of the most probable component')
    ax.set(xlabel='x (input)', ylabel='t (target)', xlim=(-0.1, 1.1),
           ylim=(-0.1, 1.1), title='demmdn1: {} points, {} tanh hidden units, '
           'K = {}'.format(args.train_points, args.hidden, args.k))
    ax.legend(loc='upper left', fontsize=8, markerscale=3)
    plots.save(fig, os.path.join(args.out, 'demmdn1-fits.png'))

    fig, axes = plots.subplots(1, 3, width=3.8, height=3.2)
    plots.mixture_panels(axes[0], x_grid, logits, mu, ln_var, 'x (input)',
                         't (target)', x=x, t=t)
    # demmdn1 plots variances; the shared panel plots sigma, so redraw it in
    # the components' colours.
    axes[0][2].cla()
    axes[0][2].set_prop_cycle(color=plots.component_colours(
        mu[:, :, 0], mixture.log_weights(logits)))
    axes[0][2].plot(x_grid, np.exp(ln_var[:, :, 0]), lw=1.2)
    axes[0][2].set(xlabel='x (input)', ylabel=r'variance $\sigma_k^2(x)$, units of t²',
                   yscale='log', title=r'variances $\sigma_k^2$')
    plots.save(fig, os.path.join(args.out, 'demmdn1-mixture.png'))

    plots.save(density_figure(x, t, x_grid, t_grid,
                              mixture.density_on_grid(logits, mu, ln_var, t_grid),
                              datasets.conditional_density('bishop', 'inverse', x_grid,
                                                           t_grid), args.k),
               os.path.join(args.out, 'demmdn1-density.png'))

    nll = train_custom_loop.heldout_nll(net, x_test, t_test)
    with chainer.no_backprop_mode():
        mse = float(np.mean((least_squares.forward(x_test).array - t_test) ** 2))
    metrics = {'mdn_test_nll': nll, 'bayes_limit': bayes, 'gap': nll - bayes,
               'gaussian_limit': datasets.gaussian_limit('bishop'),
               'least_squares_test_mse': mse, 'units': 'nats per point; t in [0, 1]',
               'config': cli.recorded_options(args)}
    files.write_metrics(os.path.join(args.out, 'demmdn1-metrics.json'), metrics,
                        ('mdn_test_nll', 'bayes_limit', 'gap', 'least_squares_test_mse'))
    return 0


if __name__ == '__main__':
    sys.exit(cli.run_main(main))
