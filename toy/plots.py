"""Figures shared by the experiments: data, samples, mixture parameters, densities.

All functions draw on matplotlib Axes given to them, so each script lays out
its own figure. Mixture parameters are NumPy arrays: logits (N, K), mu and
ln_var (N, K, 1) for a one-dimensional target.
"""
import collections
import os
import textwrap

import numpy as np
from scipy.special import log_softmax

import matplotlib
import matplotlib.font_manager
import matplotlib.ticker
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

DATA_STYLE = dict(s=4, c='0.55', alpha=0.35, linewidths=0, label='data')
SAMPLE_STYLE = dict(s=6, c='tab:red', alpha=0.7, linewidths=0)

plt.rcParams.update({'font.size': 10, 'axes.titlesize': 10,
                     'figure.dpi': 100, 'savefig.dpi': 110})


def subplots(rows, cols, width=3.6, height=3.0, **kwargs):
    """A figure of rows x cols panels, each about width x height inches."""
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows),
                        squeeze=False, **kwargs)


def wrap(text, inches, fontsize='axes.titlesize'):
    """text broken into lines that fit `inches` of width at `fontsize` (points,
    or the rcParams key of a size): a figure's width does not grow to hold its
    titles, they are cut."""
    if isinstance(fontsize, str):
        fontsize = matplotlib.font_manager.FontProperties(
            size=plt.rcParams[fontsize]).get_size_in_points()
    # An average character is about 0.55 em wide.
    return '\n'.join(textwrap.fill(line, max(12, int(inches * 72 / (0.55 * fontsize))))
                      for line in text.split('\n'))


def axes_inches(ax):
    """The width of ax in inches."""
    return ax.get_position().width * ax.figure.get_figwidth()


def component_colours(mu, log_pi):
    """A colour (K, 4) per mixture component, distinct for any K: tab10's up
    to 10, else a perceptual map sampled at K points in the order of the
    components' mean centres (weighted by pi over the inputs), so that a
    component's colour also says where it sits. mu (N, K), log_pi (N, K)."""
    k = mu.shape[1]
    if k <= 10:
        return plt.get_cmap('tab10')(np.arange(k))
    pi = np.exp(log_pi)
    centre = (pi * mu).sum(0) / np.maximum(pi.sum(0), 1e-300)
    colours = np.empty((k, 4))
    colours[np.argsort(centre, kind='stable')] = plt.get_cmap('turbo')(
        np.linspace(0.05, 0.95, k))
    return colours


def save(fig, path, rect=None):
    """Write fig as PNG through a temporary file, then close it. rect: the
    part (left, bottom, right, top, in figure fractions) the panels fill, the
    rest left to a figure legend."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = path + '.tmp.png'
    fig.tight_layout(rect=rect)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def loss_curves(path, log, ylabel):
    """A run's training loss at every epoch and its held-out loss where it was
    measured, from a Chainer LogReport log (a list of dicts)."""
    fig, axes = subplots(1, 1, width=6.4, height=4.0)
    ax = axes[0, 0]
    epoch = [e['epoch'] for e in log]
    ax.plot(epoch, [e['main/loss'] for e in log], lw=1, label='train (mean of the epoch)')
    held = [(e['epoch'], e['validation/main/loss']) for e in log
            if 'validation/main/loss' in e]
    if held:
        ax.plot(*zip(*held), 'o-', ms=2.5, lw=1, label='held-out')
    ax.set(xlabel='epoch', ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, path)


def scatter_data(ax, x, t, **style):
    """The data (N,) against (N,) as small grey dots."""
    ax.scatter(np.ravel(x), np.ravel(t), **dict(DATA_STYLE, **style))


def scatter_samples(ax, x_grid, samples, label='MDN samples', **style):
    """samples (N, S, 1) drawn at x_grid (N,): S dots per x."""
    n, s = samples.shape[:2]
    ax.scatter(np.repeat(np.ravel(x_grid), s), samples.reshape(n * s),
               label=label, **dict(SAMPLE_STYLE, **style))


def mixture_density(logits, mu, ln_var, t_grid):
    """p(t | x) of the mixture on t_grid (T,): (N, T)."""
    log_pi = log_softmax(logits, axis=1)[:, :, None]
    mu, ln_var = mu[:, :, :1], ln_var[:, :, :1]
    t = np.ravel(t_grid)[None, None, :]
    log_n = -0.5 * (np.log(2 * np.pi) + ln_var + (t - mu) ** 2 * np.exp(-ln_var))
    z = log_pi + log_n
    top = z.max(axis=1, keepdims=True)
    return np.exp(top[:, 0] + np.log(np.exp(z - top).sum(axis=1)))


def mixture_panels(axes, x_grid, logits, mu, ln_var, xlabel, ylabel,
                   x=None, t=None):
    """Three panels: priors pi_k(x), centres mu_k(x) (over the data when given)
    and standard deviations sigma_k(x), one line per component k, in the same
    colour in each panel (see `component_colours`). Labels read "SYMBOL
    (role)", e.g. "t (target)"."""
    log_pi = log_softmax(logits, axis=1)
    pi = np.exp(log_pi)
    sigma = np.exp(0.5 * ln_var[:, :, 0])
    colours = component_colours(mu[:, :, 0], log_pi)
    ax_pi, ax_mu, ax_sigma = axes
    if x is not None:
        scatter_data(ax_mu, x, t)
    for ax, lines in ((ax_pi, pi), (ax_mu, mu[:, :, 0]), (ax_sigma, sigma)):
        ax.set_prop_cycle(color=colours)
        drawn = ax.plot(x_grid, lines, lw=1.2)
    if len(colours) <= 10:
        # Beyond 10 a legend would be a wall of entries: the colours follow
        # the centres instead, as the title says.
        ax_pi.legend(drawn, ['k = {}'.format(i + 1) for i in range(len(colours))],
                     fontsize=7, ncol=2 if len(colours) > 5 else 1, loc='best')
    target = ylabel.split()[0]
    # Non-breaking spaces: "K = 24" stays on one line.
    order = ' (K\u00a0=\u00a0{}, colour by mean centre)'.format(len(colours))
    ax_pi.set(xlabel=xlabel, ylabel=r'prior $\pi_k(x)$', ylim=(-0.02, 1.02),
              title=wrap(r'mixing coefficients $\pi_k$' + (
                  order if len(colours) > 10 else ''), axes_inches(ax_pi)))
    ax_mu.set(xlabel=xlabel, ylabel=r'centre $\mu_k(x)$, units of {}'.format(target),
              title=r'centres $\mu_k$')
    ax_sigma.set(xlabel=xlabel, ylabel=r'$\sigma_k(x)$, units of {}'.format(target),
                 title=r'standard deviations $\sigma_k$', yscale='log')
    if x is not None:
        ax_mu.set_ylim(np.min(t) - 0.1 * np.ptp(t), np.max(t) + 0.1 * np.ptp(t))


def density_image(ax, x_grid, t_grid, density, xlabel, ylabel, title,
                  vmax=None):
    """p(t | x) (len(x_grid), len(t_grid)) as a heat map, x across, t up.

    vmax clips the colour scale: densities of sharp (uniform-noise) problems
    peak far above their typical value.
    """
    vmax = np.percentile(density, 99) if vmax is None else vmax
    image = ax.imshow(density.T, origin='lower', aspect='auto', cmap='viridis',
                      vmin=0, vmax=vmax,
                      extent=(x_grid[0], x_grid[-1], t_grid[0], t_grid[-1]))
    ax.figure.colorbar(image, ax=ax, label=r'$p(%s\,|\,%s)$' % (
        ylabel.split()[0], xlabel.split()[0]))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return image


def density_contours(ax, x_grid, t_grid, density, levels=8, **kwargs):
    """Contours of p(t | x) (len(x_grid), len(t_grid)) over x, t."""
    return ax.contour(x_grid, t_grid, density.T, levels=levels, **kwargs)


def draw_arms(ax, arm, theta, color, alpha=1.0, lw=1.8, label=None):
    """Two-link arm configurations theta (M, 2) as shoulder-elbow-hand polylines.

    `arm` is a `datasets.RobotArm`; the hand (end effector) gets a dot.
    """
    theta = np.atleast_2d(theta)
    elbows, hands = arm.elbow(theta), arm.forward_kinematics(theta)
    for elbow, hand in zip(elbows, hands):
        ax.plot([0, elbow[0], hand[0]], [0, elbow[1], hand[1]], '-', color=color,
                alpha=alpha, lw=lw, label=label, solid_capstyle='round')
        ax.plot(hand[0], hand[1], 'o', color=color, ms=3.5, alpha=alpha)
        label = None


def error_map(ax, x1, x2, error, title, vmin, vmax):
    """An error (len(x2), len(x1)) over a grid of positions, log colour scale;
    NaN (unreachable) cells stay blank."""
    from matplotlib.colors import LogNorm
    image = ax.pcolormesh(x1, x2, error, shading='auto', cmap='magma_r',
                          norm=LogNorm(vmin=vmin, vmax=vmax))
    ax.set(aspect='equal', title=title, xlabel='$x_1$', ylabel='$x_2$')
    return image


def nll_against_k(path, panels):
    """The sweep's summary figure, one panel per problem: held-out NLL against K.

    panels: (title, ks, nll, floor, bayes, gaussian) per problem, with nll a
    list (one per K) of arrays over seeds, floor None or the K-mixture floors'
    gaps (one per K), and the two limits in nats per point.
    """
    fig, axes = subplots(1, len(panels), width=4.2, height=3.4)
    for ax, (title, ks, nll, floor, bayes, gaussian) in zip(axes[0], panels):
        ax.errorbar(ks, [v.mean() for v in nll], yerr=[v.std() for v in nll],
                    fmt='o-', capsize=3, label='MDN (mean ± std over seeds)')
        if floor is not None:
            ax.plot(ks, bayes + np.asarray(floor), 's-', color='tab:green', ms=4,
                    label='K-mixture floor')
        ax.axhline(bayes, color='k', ls='--', label='Bayes limit')
        ax.axhline(gaussian, color='tab:orange', ls=':',
                   label='single-Gaussian limit')
        ax.set(xscale='log', xlabel='mixture components K',
               ylabel='held-out NLL (nats per point)', title=title)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.minorticks_off()
    axes[0][0].legend(fontsize=8)
    save(fig, path)


def gap_to_limits(axes, problems, rungs, target=None):
    """Each configuration's gap to the Bayes limit and to its K-mixture floor,
    one panel per problem, one row per configuration (top to bottom).

    problems: names (P,) for axes (P,); rungs: (label, {problem: (gaps (S,)
    over seeds, floor)}) per configuration, gaps and floor in nats per point
    above the Bayes limit; a configuration without a problem's runs leaves its
    row empty there. The line from the floor to the mean is the network's
    share of the gap; target, if given, is drawn as a dashed line. Returns
    the legend's handles and labels, one of each kind, for a figure legend.
    """
    rows = -np.arange(len(rungs))
    for ax, name in zip(axes, problems):
        lowest = 0
        for y, (_, found) in zip(rows, rungs):
            if name not in found:
                continue
            gaps, floor = np.asarray(found[name][0], dtype=float), found[name][1]
            lowest = min(lowest, gaps.min(), floor)
            ax.plot([floor, gaps.mean()], [y, y], '-', color='0.75', lw=4,
                    solid_capstyle='butt', zorder=1, gid='share',
                    label='gap to the K-floor (the network\'s share)')
            ax.plot(gaps, np.full(len(gaps), y), 'o', ms=4, mfc='none',
                    color='tab:blue', zorder=2, gid='seeds', label='one seed')
            ax.plot([gaps.mean()], [y], 'D', ms=5, color='tab:blue', zorder=3,
                    gid='mean', label='mean over seeds')
            ax.plot([floor], [y], '|', ms=14, mew=2.5, color='tab:green', zorder=4,
                    gid='floor', label='K-mixture floor')
            ax.annotate('{:+.3f}'.format(gaps.mean()), (max(gaps.max(), gaps.mean()), y),
                        xytext=(6, 0), textcoords='offset points', va='center',
                        fontsize=7)
        ax.axvline(0, color='k', lw=1, label='Bayes limit')
        if target is not None:
            ax.axvline(target, color='tab:red', ls='--', lw=1,
                       label='target ({} nats)'.format(target))
        # Gaps from 0.001 to 0.2 nats: logarithmic, but linear through 0 (the
        # Bayes limit, and a seed can land below it).
        ax.set_xscale('symlog', linthresh=1e-3, linscale=0.5)
        ax.set_xlim(min(-3e-4, 3 * lowest), 3 * ax.get_xlim()[1])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: '{:g}'.format(v)))
        ax.set(yticks=rows, ylim=(rows[-1] - 0.6, 0.6), title=name,
               xlabel='gap, nats per point')
        ax.grid(axis='x', lw=0.4, alpha=0.5)
    axes[0].set_yticklabels([label for label, _ in rungs])
    for ax in axes[1:]:
        ax.set_yticklabels([])
    handles = dict(zip(*axes[0].get_legend_handles_labels()[::-1]))
    return list(handles.values()), list(handles.keys())


def excess_by_input(path, title, panels):
    """Where a model loses against the truth, one panel per problem.

    panels: (name, x, excess, floor, total) with x the inputs (bin medians),
    excess the model's mean log p - log q there, floor the K-mixture floor
    at x, and total the model's mean excess over all inputs (nats).
    """
    fig, axes = subplots(1, len(panels), width=4.2, height=3.2)
    for ax, (name, x, excess, floor, total) in zip(axes[0], panels):
        ax.plot(x, excess, 'o-', ms=3, label='network (mean {:.3f})'.format(total))
        ax.plot(x, floor, 's-', color='tab:green', ms=3, label='K-mixture floor')
        ax.axhline(0, color='k', lw=0.5)
        ax.set(xlabel='input', ylabel='KL(p(y|x) || q(y|x)), nats', title=name)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save(fig, path)


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
    fig, axes = subplots(-(-len(panels) // cols), cols, width=width, height=3.2,
                         sharex=True, sharey=True)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (panel, samples) in zip(axes.flat, panels):
        scatter_samples(ax, x_grid, samples, s=3, alpha=0.45, zorder=1)
        scatter_data(ax, x, t, c='0.2', alpha=0.25, zorder=2)
        ax.set_title(wrap(panel, 0.9 * width))
    for ax in axes[-1]:
        ax.set_xlabel(x_label)
    for ax in axes[:, 0]:
        ax.set_ylabel(t_label)
    axes[0][0].legend(loc='best', fontsize=8, markerscale=3)
    fig.suptitle(wrap(title, 0.95 * width * cols, 'figure.titlesize'))
    save(fig, path)
    return fig


def mixture_against_truth(path, title, x, t, x_grid, t_grid, mixture, true,
                          x_label, t_label):
    """Two rows: pi_k, mu_k, sigma_k of one model over x_grid (N,); its density
    p(t|x) as a heat map beside the true one (N, T), and three slices of both.

    mixture: (logits (N, K), mu (N, K, 1), ln_var (N, K, 1)) in original units.
    """
    logits, mu, ln_var = mixture
    t_name, x_name = t_label.split()[0], x_label.split()[0]
    fig, axes = subplots(2, 3, width=4.0, height=3.2)
    mixture_panels(axes[0], x_grid, logits, mu, ln_var, x_label, t_label, x=x, t=t)
    learned = mixture_density(logits, mu, ln_var, t_grid)
    vmax = np.percentile(true, 99)
    density_image(axes[1][0], x_grid, t_grid, learned, x_label, t_label,
                  'learned p({}|{})'.format(t_name, x_name), vmax=vmax)
    density_image(axes[1][1], x_grid, t_grid, true, x_label, t_label,
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
    save(fig, path)


def fit_against_samples(path, title, x, t, x_grid, samples, fit, x_label,
                        t_label, sample_label):
    """The data, MDN samples (len(x_grid), S, 1) and, unless None, a
    least-squares fit (len(x_grid), 1) over x_grid."""
    fig, axes = subplots(1, 1, width=6.0, height=4.2)
    ax = axes[0][0]
    scatter_data(ax, x, t)
    scatter_samples(ax, x_grid, samples, label=sample_label)
    if fit is not None:
        ax.plot(x_grid, fit, 'b-', lw=2, label='least-squares fit')
    ax.set(xlabel=x_label, ylabel=t_label, title=title)
    ax.legend(loc='best', fontsize=8, markerscale=3)
    save(fig, path)


#: One problem of the mixture-count sweep, for `sweep_figures`: its name and
#: direction, the mixture counts ks with their held-out NLLs (an array over
#: seeds per K) and K-mixture floors (a gap per K, or None), the best K (or None), output(model, k, x) -> the seed-0
#: model's mixture (logits, mu, ln_var) or least-squares fit at x (N, 1) in
#: original units, or None; and its training data (x, t), (N, 1) each.
Problem = collections.namedtuple('Problem', 'name direction ks nll floor best output data')


def mean_over(runs):
    """What a value over `runs` seeds is: ' (mean of N seeds)', or '' for one."""
    return '' if runs == 1 else ' (mean of {} seeds)'.format(runs)


def sweep_figures(out, problems):
    """The mixture-count sweep's figures: nll_vs_k.png (every problem against
    its limits, where some problem has more than one K) and per problem
    NAME-DIRECTION-samples.png (one panel per K), -best_k.png (the best K's mixture against the true density) and
    -mse_vs_mdn.png (its samples against the least-squares fit)."""
    from toy import datasets, mdn  # the model's sampler, the true densities
    if not problems:
        return
    # Against K needs more than one K (the gap ladder's rungs have one each).
    if any(len(p.ks) > 1 for p in problems):
        nll_against_k(os.path.join(out, 'nll_vs_k.png'), [
            (p.name, p.ks, p.nll, p.floor) + datasets.limits(p.name, p.direction)
            for p in problems])
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
        samples = {k: mdn.sample(*m, n=3, rng=rng) for k, m in mixtures.items()
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
        fit = p.output('mse', 0, x_grid[:, None])
        if fit is not None:  # none without the least-squares runs (--no-baseline)
            fit_against_samples(prefix + 'mse_vs_mdn.png', '{}: least squares averages '
                                'the branches; the MDN does not'.format(p.name), x, t,
                                x_grid, samples[p.best], fit,
                                *labels, 'MDN samples (K = {})'.format(p.best))
