"""Figures shared by the experiments: data, samples, mixture parameters, densities.

All functions draw on matplotlib Axes given to them, so each script lays out
its own figure. Mixture parameters are NumPy arrays: logits (N, K), mu and
ln_var (N, K, 1) for a one-dimensional target.
"""
import os

import numpy as np
from scipy.special import log_softmax

import matplotlib
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


def save(fig, path):
    """Write fig as PNG through a temporary file, then close it."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    tmp = path + '.tmp.png'
    fig.tight_layout()
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


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
    and standard deviations sigma_k(x), one line per component k."""
    pi = np.exp(log_softmax(logits, axis=1))
    sigma = np.exp(0.5 * ln_var[:, :, 0])
    ax_pi, ax_mu, ax_sigma = axes
    if x is not None:
        scatter_data(ax_mu, x, t)
    ax_pi.plot(x_grid, pi)
    ax_mu.plot(x_grid, mu[:, :, 0])
    ax_sigma.plot(x_grid, sigma)
    ax_pi.set(xlabel=xlabel, ylabel=r'prior $\pi_k(x)$', ylim=(-0.02, 1.02),
              title=r'mixing coefficients $\pi_k$')
    ax_mu.set(xlabel=xlabel, ylabel=r'centre $\mu_k(x)$ ({})'.format(ylabel),
              title=r'centres $\mu_k$')
    ax_sigma.set(xlabel=xlabel, ylabel=r'$\sigma_k(x)$ ({})'.format(ylabel),
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
