"""The figures of the mixture-count sweep (experiments.sweep_mixtures): NLL
against K, the excess NLL by input, samples, and fits against the truth."""
import collections
import os

import numpy as np

from toy import datasets, mixture, plots
from experiments.sweep_summary import SHARE

#: One problem of the mixture-count sweep, for `sweep_figures`: its name and
#: direction, the mixture counts ks with their held-out NLLs and their gaps
#: to the Bayes NLL of their test points (an array over seeds per K, each)
#: and K-mixture floors (a gap per K, or None), the best K (or None),
#: output(model, k, x) -> the seed-0 model's mixture (logits, mu, ln_var) or
#: least-squares fit at x (N, 1) in original units, or None; and its
#: training data (x, t), (N, 1) each.
SweptProblem = collections.namedtuple('SweptProblem',
                                      'name direction ks nll gaps floor best output data')


def nll_against_k(path, panels, share=None):
    """The sweep's summary figure, one column per problem: held-out NLL
    against K and, where the floors are known, below it the network's share
    (a run's gap less its K-floor) against K.

    panels: (title, ks, nll, gaps, floor, bayes, gaussian) per problem, with
    nll and gaps lists (one per K) of arrays over seeds, floor None or the
    K-mixture floors' gaps (one per K), and the two limits in nats per
    point; share, if given, is drawn as the share's goal.
    """
    shares = any(panel[4] is not None for panel in panels)
    fig, axes = plots.subplots(1 + shares, len(panels), width=4.2, height=3.4)
    for column, (title, ks, nll, gaps, floor, bayes, gaussian) in enumerate(panels):
        ax = axes[0][column]
        ax.errorbar(ks, [v.mean() for v in nll], yerr=[v.std() for v in nll],
                    fmt='o-', capsize=3, label='MDN (mean ± std over seeds)')
        if floor is not None:
            ax.plot(ks, bayes + np.asarray(floor), 's-', color='tab:green', ms=4,
                    label='K-mixture floor')
        ax.axhline(bayes, color='k', ls='--', label='Bayes limit')
        ax.axhline(gaussian, color='tab:orange', ls=':',
                   label='single-Gaussian limit')
        ax.set(ylabel='held-out NLL (nats per point)', title=title)
        if shares and floor is not None:
            network = axes[1][column]
            values = [g - f for g, f in zip(gaps, floor)]
            for k, v in zip(ks, values):
                network.plot(np.full(len(v), k), v, 'o', ms=3, mfc='none',
                             color='tab:blue', gid='seeds')
            network.plot(ks, [v.mean() for v in values], '-', color='tab:blue',
                         gid='mean', label='network\'s share (each seed, mean)')
            network.axhline(0, color='tab:green', lw=1, label='the K-floor')
            if share is not None:
                network.axhline(share, color='tab:red', ls='--', lw=1,
                                label='goal ({} nats)'.format(share))
            # Shares from 0.001 to 1 nat: logarithmic, linear through 0
            # (a run can land a little below its floor).
            network.set_yscale('symlog', linthresh=1e-2, linscale=0.5)
            network.set(ylabel='gap to the K-floor (nats)')
            network.legend(fontsize=8)
        elif shares:
            axes[1][column].set_visible(False)
    for row in axes:
        for ax, panel in zip(row, panels):
            ax.set(xscale='log', xlabel='mixture components K')
            ax.set_xticks(panel[1])
            ax.set_xticklabels([str(k) for k in panel[1]])
            ax.minorticks_off()
    axes[0][0].legend(fontsize=8)
    plots.save(fig, path)


def excess_by_input(path, title, panels):
    """Where a model loses against the truth, one panel per problem.

    panels: (name, x, excess, floor, total) with x the inputs (bin medians),
    excess the model's mean log p - log q there, floor the K-mixture floor
    at x, and total the model's mean excess over all inputs (nats).
    """
    fig, axes = plots.subplots(1, len(panels), width=4.2, height=3.2)
    for ax, (name, x, excess, floor, total) in zip(axes[0], panels):
        ax.plot(x, excess, 'o-', ms=3, label='network (mean {:.3f})'.format(total))
        ax.plot(x, floor, 's-', color='tab:green', ms=3, label='K-mixture floor')
        ax.axhline(0, color='k', lw=0.5)
        ax.set(xlabel='input', ylabel='KL(p(y|x) || q(y|x)), nats', title=name)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    plots.save(fig, path)


def samples_grid(path, title, x, t, x_grid, panels, x_label, t_label, cols=5):
    """MDN samples over the data (x, t), one panel per model.

    panels: (panel title, samples (len(x_grid), S, 1)) per model. The samples
    are small and faint and the data lie above them, so that neither hides
    the other; titles are wrapped to their panel's and the figure's width.
    Returns the figure, closed, as written.
    """
    cols = min(cols, len(panels))
    # A figure of one or two panels still needs room for its title.
    width = max(3.4, 5.0 / cols)
    fig, axes = plots.subplots(-(-len(panels) // cols), cols, width=width, height=3.2,
                               sharex=True, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (panel, samples) in zip(axes.flat, panels):
        plots.scatter_samples(ax, x_grid, samples, s=3, alpha=0.45, zorder=1)
        plots.scatter_data(ax, x, t, c='0.2', alpha=0.25, zorder=2)
        ax.set_title(plots.wrap(panel, 0.9 * width))
    for ax in axes[-1]:
        ax.set_xlabel(x_label)
    for ax in axes[:, 0]:
        ax.set_ylabel(t_label)
    axes[0][0].legend(loc='best', fontsize=8, markerscale=3)
    fig.suptitle(plots.wrap(title, 0.95 * width * cols, 'figure.titlesize'))
    plots.save(fig, path)
    return fig


def mixture_against_truth(path, title, x, t, x_grid, t_grid, fitted, true,
                          x_label, t_label):
    """Two rows: pi_k, mu_k, sigma_k of one model over x_grid (N,); its density
    p(t|x) as a heat map beside the true one (N, T), and three slices of both.

    fitted: (logits (N, K), mu (N, K, 1), ln_var (N, K, 1)) in original units.
    """
    logits, mu, ln_var = fitted
    t_name, x_name = t_label.split()[0], x_label.split()[0]
    fig, axes = plots.subplots(2, 3, width=4.0, height=3.2)
    plots.mixture_panels(axes[0], x_grid, logits, mu, ln_var, x_label, t_label, x=x, t=t)
    learned = mixture.density_on_grid(logits, mu, ln_var, t_grid)
    vmax = np.percentile(true, 99)
    plots.density_image(axes[1][0], x_grid, t_grid, learned, x_label, t_label,
                        'learned p({}|{})'.format(t_name, x_name), vmax=vmax)
    plots.density_image(axes[1][1], x_grid, t_grid, true, x_label, t_label,
                        'true p({}|{})'.format(t_name, x_name), vmax=vmax)
    ax = axes[1][2]
    for i, colour in zip(np.linspace(0.2, 0.8, 3) * (len(x_grid) - 1),
                         ('tab:blue', 'tab:green', 'tab:purple')):
        i = int(i)
        ax.plot(t_grid, true[i], color=colour, ls='--')
        ax.plot(t_grid, learned[i], color=colour,
                label='{} = {:.2f}'.format(x_name, x_grid[i]))
    ax.set(xlabel=t_label, ylabel='density',
           title='slices: learned (solid), true (dashed)')
    ax.legend(fontsize=8)
    fig.suptitle(title)
    plots.save(fig, path)


def fit_against_samples(path, title, x, t, x_grid, samples, fit, x_label,
                        t_label, sample_label):
    """The data, MDN samples (len(x_grid), S, 1) and, unless None, a
    least-squares fit (len(x_grid), 1) over x_grid."""
    fig, axes = plots.subplots(1, 1, width=6.0, height=4.2)
    ax = axes[0][0]
    plots.scatter_data(ax, x, t)
    plots.scatter_samples(ax, x_grid, samples, label=sample_label)
    if fit is not None:
        ax.plot(x_grid, fit, 'b-', lw=2, label='least-squares fit')
    ax.set(xlabel=x_label, ylabel=t_label, title=title)
    ax.legend(loc='best', fontsize=8, markerscale=3)
    plots.save(fig, path)


def mean_over(runs):
    """What a value over `runs` seeds is: ' (mean of N seeds)', or '' for one."""
    return '' if runs == 1 else ' (mean of {} seeds)'.format(runs)


def sweep_figures(out, problems):
    """The mixture-count sweep's figures: nll_vs_k.png (every problem against
    its limits, where some problem has more than one K) and per problem
    NAME-DIRECTION-samples.png (one panel per K), -best_k.png (the best K's
    mixture against the true density) and
    -least_squares_vs_mdn.png (its samples against the least-squares fit)."""
    if not problems:
        return
    # Against K needs more than one K (the gap ladder's rungs have one each).
    if any(len(p.ks) > 1 for p in problems):
        nll_against_k(os.path.join(out, 'nll_vs_k.png'), [
            (p.name, p.ks, p.nll, p.gaps, p.floor) + datasets.limits(p.name, p.direction)
            for p in problems], share=SHARE)
    for p in problems:
        problem, inverse = datasets.PROBLEMS[p.name], p.direction == 'inverse'
        labels = ('{} (input)'.format(problem.observed if inverse else problem.latent),
                  '{} (target)'.format(problem.latent if inverse else problem.observed))
        x, t = p.data
        x_grid = np.linspace(x.min(), x.max(), 300, dtype=np.float32)
        t_grid = np.linspace(t.min() - 0.05 * np.ptp(t), t.max() + 0.05 * np.ptp(t),
                             300)
        mixtures = {k: p.output('mdn', k, x_grid[:, None]) for k in p.ks}
        rng = np.random.RandomState(0)
        samples = {k: mixture.sample(*m, n=3, rng=rng) for k, m in mixtures.items()
                   if m is not None}
        # Every training point would bury the samples: the draws are i.i.d.,
        # so the first 3,000 are a random subset.
        x, t = x[:3000], t[:3000]
        prefix = os.path.join(out, '{}-{}-'.format(p.name, p.direction))
        bayes = datasets.limits(p.name, p.direction)[0]
        if samples:
            samples_grid(prefix + 'samples.png', '{}: data and 3 MDN samples per x, '
                         'seed 0; Bayes limit {:.3f} nats per point'.format(
                             p.name, bayes), x, t, x_grid,
                         [('K = {}: held-out NLL {:.3f} nats per point{}'.format(
                             k, nll.mean(), mean_over(len(nll))), samples[k])
                          for k, nll in zip(p.ks, p.nll) if k in samples], *labels)
        if p.best not in samples:
            continue
        mixture_against_truth(
            prefix + 'best_k.png', '{}: best K = {} (seed 0)'.format(p.name, p.best),
            x, t, x_grid, t_grid, mixtures[p.best],
            datasets.conditional_density(p.name, p.direction, x_grid, t_grid), *labels)
        fit = p.output('least_squares', 0, x_grid[:, None])
        if fit is not None:  # none without the least-squares runs (--no-baseline)
            fit_against_samples(prefix + 'least_squares_vs_mdn.png', '{}: least squares averages '
                                'the branches; the MDN does not'.format(p.name), x, t,
                                x_grid, samples[p.best], fit,
                                *labels, 'MDN samples (K = {})'.format(p.best))
