"""toy/plots.py: what a reader must be able to tell from the figures."""
import os

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection

from experiments import close_the_gap, sweep_figures
from toy import datasets, plots


def mixture(k, n=50, seed=0):
    """logits (n, K), mu (n, K, 1) and ln_var (n, K, 1): component j's centre
    sits at j / K, shuffled, so that the order of the centres is known."""
    rng = np.random.default_rng(seed)
    x_grid = np.linspace(0, 1, n)
    order = rng.permutation(k)
    mu = (order / k)[None, :, None] + 0.01 * x_grid[:, None, None]
    return x_grid, rng.normal(size=(n, k)), mu, np.full((n, k, 1), -4.0), order


@pytest.mark.parametrize('k', [16, 24])
def test_every_component_has_its_own_colour_in_every_panel(k):
    """The 10-colour cycle repeated: component 11 looked like component 1."""
    x_grid, logits, mu, ln_var, order = mixture(k)
    fig, axes = plots.subplots(1, 3)
    plots.mixture_panels(axes[0], x_grid, logits, mu, ln_var, 'x (input)', 't (target)')
    colours = [[to_rgba(line.get_color()) for line in ax.get_lines()]
               for ax in axes[0]]
    assert all(len(c) == k for c in colours)
    assert len(set(colours[0])) == k
    assert colours[0] == colours[1] == colours[2]    # one colour per component
    # The colours run along the map in the order of the centres.
    ranks = np.argsort(np.argsort(order))
    expected = plots.plt.get_cmap('turbo')(np.linspace(0.05, 0.95, k))[ranks]
    np.testing.assert_allclose(np.array(colours[0]), expected)
    assert 'colour by mean centre' in ' '.join(axes[0][0].get_title().split())
    plots.plt.close(fig)


def test_few_components_are_named_in_a_legend_and_labels_give_units():
    x_grid, logits, mu, ln_var, _ = mixture(3)
    fig, axes = plots.subplots(1, 3)
    plots.mixture_panels(axes[0], x_grid, logits, mu, ln_var, 'x (input)', 't (target)')
    legend = axes[0][0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ['k = 1', 'k = 2', 'k = 3']
    assert axes[0][1].get_ylabel() == r'centre $\mu_k(x)$, units of t'
    assert axes[0][2].get_ylabel() == r'$\sigma_k(x)$, units of t'
    plots.plt.close(fig)


def drawn_outside(fig):
    """How far (pixels) what fig draws, text included, reaches past its canvas
    on any side: 0 if nothing is cut."""
    # A closed figure has lost its canvas: give it one to measure with.
    renderer = FigureCanvasAgg(fig).get_renderer()
    box = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    width, height = fig.canvas.get_width_height()
    return max(0, -box.x0, -box.y0, box.x1 - width, box.y1 - height)


@pytest.mark.parametrize('panels', [1, 3])
def test_samples_lie_under_the_data_and_no_title_is_cut(tmp_path, panels):
    """The red samples hid the grey data, and a one-panel figure (the gap
    ladder's) cut its title."""
    rng = np.random.default_rng(1)
    x, t = datasets.generate('bishop', 500, rng)
    x_grid = np.linspace(0, 1, 100)
    samples = rng.uniform(size=(100, 3, 1))
    fig = sweep_figures.samples_grid(
        str(tmp_path / 'samples.png'), 'bishop: data and 3 MDN samples per x, seed 0; '
        'Bayes limit -1.282 nats per point', x, t, x_grid,
        [('K = 24: held-out NLL -1.257 nats per point (mean of 3 seeds)', samples)]
        * panels, 'x (input)', 't (target)')
    assert os.path.isfile(str(tmp_path / 'samples.png'))
    for ax in fig.axes[:panels]:
        dots = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
        data, drawn = dots['data'], dots['MDN samples']
        assert data.get_zorder() > drawn.get_zorder()
        # Both translucent: each shows through the other.
        assert data.get_alpha() < 0.5 and drawn.get_alpha() < 0.5
    assert drawn_outside(fig) < 1
    assert fig.get_figwidth() >= 5.0


def test_an_against_k_figure_needs_more_than_one_k(tmp_path):
    """The gap ladder's rungs drew nll_vs_k.png over a single K. (No model
    files: the per-problem figures are left out, and only that one is drawn.)"""
    def problem(ks):
        return sweep_figures.SweptProblem(
            'bishop', 'inverse', ks, [np.array([-1.0, -1.1])] * len(ks),
            [np.array([0.3, 0.2])] * len(ks), None, ks[-1],
            lambda model, k, x: None,
            datasets.generate('bishop', 100, np.random.default_rng(0)))

    one, two = tmp_path / 'one', tmp_path / 'two'
    sweep_figures.sweep_figures(str(one), [problem([24])])
    sweep_figures.sweep_figures(str(two), [problem([24]), problem([2, 24])])
    assert not one.exists()
    assert os.listdir(str(two)) == ['nll_vs_k.png']


def test_gap_figure_draws_each_rung_at_its_values():
    rungs = [('a (K = 12)', {'p': (np.array([0.10, 0.12, 0.14]), 0.02),
                             'q': (np.array([0.05]), 0.001)}),
             ('b (K = 24)', {'p': (np.array([0.03, 0.02]), 0.01)}),   # no q
             ('c (K = 24)', {'q': (np.array([-0.004, 0.01]), 0.002)})]   # no p
    fig, axes = plots.subplots(1, 2)
    handles, labels = close_the_gap.gap_to_limits(axes[0], ['p', 'q'], rungs, target=0.05)
    assert len(labels) == len(set(labels)) and 'K-mixture floor' in labels

    def marks(ax, gid):
        return [(tuple(line.get_xdata()), tuple(line.get_ydata()))
                for line in ax.get_lines() if line.get_gid() == gid]
    p, q = axes[0]
    assert marks(p, 'mean') == [((pytest.approx(0.12),), (0,)),
                                ((pytest.approx(0.025),), (-1,))]
    assert marks(p, 'floor') == [((0.02,), (0,)), ((0.01,), (-1,))]
    assert marks(p, 'seeds') == [((0.10, 0.12, 0.14), (0, 0, 0)), ((0.03, 0.02), (-1, -1))]
    assert marks(q, 'mean') == [((0.05,), (0,)), ((pytest.approx(0.003),), (-2,))]
    assert marks(q, 'floor') == [((0.001,), (0,)), ((0.002,), (-2,))]
    # A seed below the Bayes limit stays in view.
    assert q.get_xlim()[0] < -0.004 < 0.05 < q.get_xlim()[1]
    assert [t.get_text() for t in p.get_yticklabels()] == ['a (K = 12)', 'b (K = 24)',
                                                           'c (K = 24)']
    # The Bayes limit at 0 and the target: vertical lines at those gaps.
    assert {line.get_xdata()[0] for line in p.get_lines() if line.get_gid() is None
            and len(set(line.get_xdata())) == 1} == {0, 0.05}
    plots.plt.close(fig)


def test_against_k_draws_each_runs_share_of_the_gap_below(tmp_path, monkeypatch):
    """The second row: per K, each seed's gap less the K-floor and their
    mean; a problem without floors leaves its panel empty."""
    drawn = {}
    monkeypatch.setattr(plots, 'save', lambda fig, path, **kw: drawn.update(fig=fig))
    ks = [1, 2, 4]
    gaps = [np.array([0.70, 0.72]), np.array([0.20, 0.30]), np.array([0.051, 0.049])]
    floor = [0.6, 0.15, 0.04]
    panels = [('p', ks, [g - 1 for g in gaps], gaps, floor, -1.0, -0.3),
              ('q', ks, [g - 1 for g in gaps], gaps, None, -1.0, -0.3)]
    sweep_figures.nll_against_k(str(tmp_path / 'f.png'), panels, share=0.02)
    axes = np.array(drawn['fig'].axes).reshape(2, 2)
    lines = {line.get_gid(): [] for line in axes[1, 0].get_lines()}
    for line in axes[1, 0].get_lines():
        lines[line.get_gid()].append((list(line.get_xdata()), list(line.get_ydata())))
    assert [x for x, _ in lines['seeds']] == [[1, 1], [2, 2], [4, 4]]
    np.testing.assert_allclose([y for _, y in lines['seeds']],
                               [[0.10, 0.12], [0.05, 0.15], [0.011, 0.009]])
    np.testing.assert_allclose(lines['mean'][0][1], [0.11, 0.10, 0.01])
    assert not axes[1, 1].get_visible()
    plots.plt.close(drawn['fig'])
