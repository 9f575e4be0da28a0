"""Figures shared by the experiments: data, samples, mixture parameters, densities.

All functions draw on matplotlib Axes given to them, so each script lays out
its own figure. Mixture parameters are NumPy arrays: logits (N, K), mu and
ln_var (N, K, 1) for a one-dimensional target.
"""
import os
import textwrap

import numpy as np

import matplotlib
import matplotlib.font_manager
import matplotlib.ticker
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from toy import mixture

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


def mixture_panels(axes, x_grid, logits, mu, ln_var, xlabel, ylabel,
                   x=None, t=None):
    """Three panels: priors pi_k(x), centres mu_k(x) (over the data when given)
    and standard deviations sigma_k(x), one line per component k, in the same
    colour in each panel (see `component_colours`). Labels read "SYMBOL
    (role)", e.g. "t (target)"."""
    log_pi = mixture.log_weights(logits)
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


#: One problem of the mixture-count sweep, for `sweep_figures`: its name and
#: direction, the mixture counts ks with their held-out NLLs (an array over
#: seeds per K) and K-mixture floors (a gap per K, or None), the best K (or None), output(model, k, x) -> the seed-0
#: model's mixture (logits, mu, ln_var) or least-squares fit at x (N, 1) in
#: original units, or None; and its training data (x, t), (N, 1) each.
