"""Bishop's (1994) second experiment: inverse kinematics of a two-link robot arm.

Input: the end effector's position x (2-D); target: the joint angles theta
(D = 2). Each x is reached by two configurations, elbow up and elbow down
(`toy.robot_arm.RobotArm`: L1 = 0.8, L2 = 0.2, theta1 in (0.3, 1.2), theta2
in (pi/2, 3 pi/2), noise of 0.01 on x). Four models, trained alike (same
network, data, optimiser and steps; the parameters of best validation NLL or
MSE kept):

  least squares            one theta per x, by mean squared error
  per-dimension mixture    a K-mixture for theta1 and another for theta2
                           (the WorldModels MDN-RNN's head)
  joint, diagonal          one K-mixture over (theta1, theta2), diagonal
                           covariances (this repository's MDN)
  joint, full              the same with a full covariance per component

Reported over a fresh test set: the held-out NLL (nats per point, angles in
radians) beside the Bayes limit H(theta | x); the end-effector error, RMS of
|f(theta_hat) - x| for the forward kinematics f of the predicted angles (the
most probable component's mean, and the mixture's mean), as Bishop measures
it; how often a prediction pairs theta1 of one branch with theta2 of the
other. Writes metrics.json, results.md and figures to --out.
"""
import math
import os
import sys
import time

import matplotlib.colors
import numpy as np
from tqdm import tqdm

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from toy import (cli, files, heads, mdn, mixture, nets, plots, preprocess,
                 robot_arm, train_custom_loop)

MODELS = ('least_squares', 'per_dimension', 'joint_diag', 'joint_full')
TITLES = {'least_squares': 'least squares',
          'per_dimension': 'per-dimension mixture',
          'joint_diag': 'joint mixture, diagonal covariance',
          'joint_full': 'joint mixture, full covariance'}
COLOURS = {'least_squares': 'tab:blue', 'per_dimension': 'tab:orange',
           'joint_diag': 'tab:red', 'joint_full': 'tab:green'}
#: The mixture density networks' classes.
HEADS = {'per_dimension': heads.PerDimensionMDN, 'joint_diag': mdn.MDN,
         'joint_full': heads.FullCovarianceMDN}
#: Axis labels: positions in units of the arm's length L1 + L2 = 1, angles in radians.
X1, X2 = (r'$x_{}$ (units of $L_1 + L_2$)'.format(i) for i in (1, 2))
THETA1, THETA2 = (r'$\theta_{}$ (rad)'.format(i) for i in (1, 2))
#: How the targets are marked in the arm drawings.
TARGET = dict(marker='x', color='k', ms=8, ls='none')
#: The largest --noise: the Bayes limit's quadrature (RobotArm.limits) takes
#: the noise small against the workspace's inner radius 0.82, and at 0.08
#: its mass is 3, not 1.
NOISE_MAX = 0.05
#: Bytes per node of that quadrature (positions, densities, weights, temporaries).
QUADRATURE_NODE_BYTES = 80


def make_parser():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_training_arguments(
        parser, epoch=100, batchsize=250, lr=0.01, lr_final=1e-4, hidden=[64], k=5,
        train_points=20000, val_points=5000, test_points=10000, seed=0,
        out=os.path.join('results', 'robot_arm'))
    parser.add_argument('--covariance', nargs='+', choices=('diag', 'full'),
                        default=['diag', 'full'],
                        help='covariance(s) of the joint mixture to train')
    parser.add_argument('--noise', type=cli.positive_float, default=0.01,
                        help='standard deviation of the noise on x, at most {}'
                             .format(NOISE_MAX))
    parser.add_argument('--grid', type=cli.at_least(8), default=160,
                        help='cells per side of the error maps')
    return parser


def check_args(parser, args):
    if args.batchsize > args.train_points:
        parser.error('--batchsize {} is larger than the {} training points: use '
                     'at most --batchsize {}'.format(args.batchsize, args.train_points,
                                                     args.train_points))
    if args.lr_final > args.lr:
        parser.error('--lr-final {} is larger than --lr {}: the step size decays'
                     .format(args.lr_final, args.lr))
    if args.noise > NOISE_MAX:
        parser.error('--noise {} is larger than {}, where the quadrature of the Bayes '
                     'limit holds: use --noise {} or less'.format(args.noise, NOISE_MAX,
                                                                  NOISE_MAX))
    args.covariance = sorted(set(args.covariance))
    args.hidden = nets.hidden_option(args.hidden)
    return cli.check_resources(parser, args, memory_needed,
                               '--train-points, --val-points, --test-points, '
                               '--batchsize, --hidden, -k or --grid, or a larger --noise')


def quadrature_nodes(noise):
    """Nodes of the Bayes limit's quadrature at this noise (as
    RobotArm.entropy_x lays them: 4 x 4 per noise-wide piece of its polar
    box); they grow as 1 / noise^2."""
    rho_lo, rho_hi, alpha_lo, alpha_hi = robot_arm.RobotArm(noise).support()
    return 16 * math.ceil((rho_hi - rho_lo) / noise) * math.ceil(
        (alpha_hi - alpha_lo) * rho_hi / noise)


def memory_needed(args):
    """Rough upper estimate of a run's bytes: the training of the model with
    the largest head (cli.training_bytes) over the most rows at once (a batch,
    the validation or test set, or the error-map grid), the grid, and the
    Bayes limit's quadrature."""
    head = max(cls.head_size(args.k, 2) for cls in HEADS.values())
    rows = max(args.batchsize, args.val_points, args.test_points, args.grid ** 2)
    points = args.train_points + args.val_points + args.test_points
    return (cli.training_bytes(nets.hidden_widths(args.hidden), head, rows, points,
                               in_dim=2, out_dim=2)
            + 8 * 16 * args.grid ** 2
            + QUADRATURE_NODE_BYTES * quadrature_nodes(args.noise))


def build(name, args, rng):
    common = dict(in_dim=2, out_dim=2, hidden=args.hidden, activation='tanh',
                  rng=rng)
    if name == 'least_squares':
        return nets.LeastSquares(**common)
    return HEADS[name](k=args.k, **common)


def train_model(model, data, args, seed, progress=None):
    """The lean loop (best validation kept), alike for every model."""
    return train_custom_loop.fit(model, data['x'], data['theta'], data['x_val'],
                                 data['theta_val'], epochs=args.epoch,
                                 batchsize=args.batchsize, lr=args.lr,
                                 lr_final=args.lr_final, eval_every=1, seed=seed,
                                 device=args.device, progress=progress)


def to_cpu(a):
    return chainer.backend.CpuDevice().send(a)


def predict(name, model, scaler, x, how='mode'):
    """Joint angles (N, 2) in radians for positions x (N, 2)."""
    xs = model.xp.asarray(scaler.inputs(x))
    if name == 'least_squares':
        with chainer.no_backprop_mode(), chainer.using_config('train', False):
            theta = model.forward(xs).array
    else:
        theta = model.point_estimate(xs, how)
    return scaler.untarget(to_cpu(theta).astype(np.float64))


def model_metrics(name, model, arm, scaler, x, theta, bayes):
    """A trained model's metrics over the test set x, theta (N, 2) each: a
    dict, the mask (N,) of the two-valued positions, and the mask of those
    where its prediction mixes the branches. bayes: the Bayes limit."""
    theta_mode = predict(name, model, scaler, x, 'mode')
    theta_mean = (theta_mode if name == 'least_squares'
                  else predict(name, model, scaler, x, 'mean'))
    nll = (None if name == 'least_squares'
           else train_custom_loop.heldout_nll(model, x, theta, scaler))
    two_valued, mixed = branch_mixing(arm, x, theta_mode)
    return {'nll': nll, 'gap': None if nll is None else nll - bayes,
            'rms_mode': rms(hand_error(arm, theta_mode, x)),
            'rms_mean': rms(hand_error(arm, theta_mean, x)),
            'rms_theta_nearest_solution': rms(angle_error(arm, theta_mode, x)),
            'branches_mixed': float(mixed.sum() / max(1, two_valued.sum()))
            }, two_valued, mixed


def branch_mixing(arm, x, theta_hat):
    """Masks (N,): the positions with two well-separated valid configurations,
    and those of them whose prediction takes theta1 from one branch and
    theta2 from the other."""
    up, down = arm.inverse_kinematics(x)
    rho = np.hypot(x[:, 0], x[:, 1])
    lo, hi = arm.theta1_range
    two_valued = ((rho > arm.radius(arm.theta2_range[0])) & (rho < arm.l1 + arm.l2)
                  & (np.abs(up[:, 1] - np.pi) > 0.25)
                  & (up[:, 0] > lo) & (up[:, 0] < hi)
                  & (down[:, 0] > lo) & (down[:, 0] < hi))
    first_up = np.abs(theta_hat[:, 0] - up[:, 0]) < np.abs(theta_hat[:, 0] - down[:, 0])
    second_up = theta_hat[:, 1] < np.pi
    return two_valued, (first_up != second_up) & two_valued


def posterior_correlation(arm, theta):
    """|corr(theta1, theta2)| of the within-branch posterior sigma^2 (J^T J)^-1
    at the true angles: |L2 - L1 cos theta2| / |x|, 1 on the rim."""
    return np.abs(arm.l2 - arm.l1 * np.cos(theta[:, 1])) / arm.radius(theta[:, 1])


def reachable_grid(arm, cells):
    """A square grid over the workspace: x1 (G,), x2 (G,), positions (G*G, 2)
    and the mask (G*G,) of those with an exact solution inside the angle box."""
    x1 = np.linspace(0.05, 1.0, cells)
    x2 = np.linspace(0.0, 1.0, cells)
    grid = np.stack(np.meshgrid(x1, x2), -1).reshape(-1, 2)
    rho = np.hypot(grid[:, 0], grid[:, 1])
    lo, hi = arm.theta1_range
    solutions = arm.inverse_kinematics(grid)
    inside = ((solutions[..., 0] > lo) & (solutions[..., 0] < hi)).any(axis=0)
    ok = (rho >= arm.radius(arm.theta2_range[0])) & (rho <= arm.l1 + arm.l2) & inside
    return x1, x2, grid, ok


def hand_error(arm, theta_hat, x):
    """|f(theta_hat) - x| per point: (N,)."""
    return np.linalg.norm(arm.forward_kinematics(theta_hat) - x, axis=1)


def angle_error(arm, theta_hat, x):
    """Distance (radians) from theta_hat to the nearer exact solution for x: (N,)."""
    return np.linalg.norm(theta_hat - arm.inverse_kinematics(x), axis=-1).min(axis=0)


def rms(e):
    return float(np.sqrt(np.mean(np.square(e))))


def draw_arms(ax, arm, theta, color, alpha=1.0, lw=1.8, label=None):
    """Two-link arm configurations theta (M, 2) as shoulder-elbow-hand polylines.

    `arm` is a `robot_arm.RobotArm`; the hand (end effector) gets a dot.
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
    image = ax.pcolormesh(x1, x2, error, shading='auto', cmap='magma_r',
                          norm=matplotlib.colors.LogNorm(vmin=vmin, vmax=vmax))
    ax.set(aspect='equal', title=title, xlabel='$x_1$', ylabel='$x_2$')
    return image


def figures(out, arm, data, models, scaler, names, grid_cells, per_dim_mixed):
    """workspace.png, arms.png, landing.png and error_maps.png in out.
    per_dim_mixed (N,): the test positions where the per-dimension mixture
    pairs theta1 of one branch with theta2 of the other."""
    x, theta = data['x_test'], data['theta_test']
    show = np.random.default_rng(0).permutation(len(x))[:4000]
    plots.save(workspace_figure(arm, x, theta, show), os.path.join(out, 'workspace.png'))
    plots.save(arms_figure(arm, models, scaler, names, shown_targets(x, per_dim_mixed),
                           np.count_nonzero(per_dim_mixed) >= 3),
               os.path.join(out, 'arms.png'))
    plots.save(landing_figure(arm, models, scaler, names, x[show[:400]]),
               os.path.join(out, 'landing.png'))
    error_maps(os.path.join(out, 'error_maps.png'), arm, models, scaler, names,
               grid_cells)


#: Positions in the middle of the workspace, reached by both branches.
MIDDLE = np.array([[0.42, 0.82], [0.63, 0.63], [0.8, 0.42]])


def shown_targets(x, per_dim_mixed):
    """The three targets (3, 2) of arms.png: where the per-dimension mixture
    pairs the branches, three test positions x spread by polar angle, if it
    does at three; else positions in the middle of the workspace."""
    where = np.nonzero(per_dim_mixed)[0]
    where = where[np.argsort(np.arctan2(x[where, 1], x[where, 0]))]
    return np.concatenate([x[where[[len(where) // 6, len(where) // 2,
                                    5 * len(where) // 6]]] if len(where) >= 3
                           else np.zeros((0, 2)), MIDDLE])[:3]


def mark_targets(ax, targets):
    ax.plot(targets[:, 0], targets[:, 1], label='target x', **TARGET)


def workspace_figure(arm, x, theta, show):
    """The workspace and its two branches: positions x and angles theta (N, 2)
    of the test set, the rows `show` of them drawn; both configurations at
    three targets."""
    fig, axes = plots.subplots(1, 3, width=4.0, height=3.8)
    ax = axes[0][0]
    up = theta[:, 1] < np.pi
    for mask, colour, label in ((up, 'tab:purple', r'elbow up ($\theta_2 < \pi$)'),
                                (~up, 'tab:olive', r'elbow down ($\theta_2 > \pi$)')):
        sel = show[mask[show]]
        ax.scatter(x[sel, 0], x[sel, 1], s=2, c=colour, alpha=0.4, linewidths=0,
                   label=label)
    ax.set(aspect='equal', title='workspace: end-effector positions x',
           xlabel=X1, ylabel=X2)
    ax.legend(loc='lower left', fontsize=7, markerscale=4)
    ax = axes[0][1]
    for mask, colour in ((up, 'tab:purple'), (~up, 'tab:olive')):
        sel = show[mask[show]]
        ax.scatter(theta[sel, 0], theta[sel, 1], s=2, c=colour, alpha=0.4,
                   linewidths=0)
    ax.axhline(np.pi, color='k', lw=0.8, ls='--', label=r'$\theta_2 = \pi$ (arm straight)')
    ax.set(title=r'joint angles $\theta$ (the target)', xlabel=THETA1, ylabel=THETA2)
    ax.legend(loc='lower left', fontsize=7)
    ax = axes[0][2]
    for i, target in enumerate(MIDDLE):
        branches = arm.inverse_kinematics(target[None])[:, 0]
        draw_arms(ax, arm, branches[:1], 'tab:purple',
                        label=None if i else 'elbow up')
        draw_arms(ax, arm, branches[1:], 'tab:olive',
                        label=None if i else 'elbow down')
    mark_targets(ax, MIDDLE)
    ax.set(aspect='equal', xlim=(-0.1, 1.0), ylim=(-0.05, 1.05),
           title='two configurations per target', xlabel=X1, ylabel=X2)
    ax.legend(loc='upper left', fontsize=7)
    return fig


def arms_figure(arm, models, scaler, names, shown, paired):
    """Predicted configurations drawn as arms at the targets shown (M, 2),
    one panel per model; paired: they are where the per-dimension mixture
    pairs the branches."""
    fig, axes = plots.subplots(1, len(names), width=3.6, height=3.9)
    for ax, name in zip(axes[0], names):
        draw_arms(ax, arm, predict(name, models[name], scaler, shown),
                        COLOURS[name], label='predicted arm')
        if name not in ('least_squares', 'per_dimension'):
            # Every component of a joint mixture, faded by its weight (a
            # per-dimension mixture has no joint components).
            model = models[name]
            logits, mu = model.mixture(model.xp.asarray(scaler.inputs(shown)))[:2]
            pi = np.exp(mixture.log_weights(to_cpu(logits)))
            mu = scaler.untarget(to_cpu(mu))
            label = 'a component (faded by weight)'
            for i in range(len(shown)):
                for k in range(pi.shape[1]):
                    if pi[i, k] > 0.02:
                        draw_arms(ax, arm, mu[i, k], 'k', alpha=0.6 * pi[i, k],
                                        lw=1, label=label)
                        label = None
        mark_targets(ax, shown)
        ax.set(aspect='equal', xlim=(-0.1, 1.0), ylim=(-0.05, 1.05),
               title=TITLES[name], xlabel=X1, ylabel=X2)
        ax.legend(loc='lower left', fontsize=7)
    fig.suptitle(plots.wrap('predicted configurations (most probable component) at '
                            'three targets x{}'.format(
                                ' where the per-dimension mixture pairs the branches'
                                if paired else ''), fig.get_figwidth(),
                            'figure.titlesize'))
    return fig


def landing_figure(arm, models, scaler, names, x):
    """Where each model's predicted arm lands, f(theta_hat), against the
    targets x (M, 2): one panel per model in names."""
    fig, axes = plots.subplots(1, len(names), width=3.8, height=4.2)
    circle = np.linspace(0, np.pi / 2, 200)
    for ax, name in zip(axes[0], names):
        reached = arm.forward_kinematics(predict(name, models[name], scaler, x))
        ax.plot(np.stack([x[:, 0], reached[:, 0]]), np.stack([x[:, 1], reached[:, 1]]),
                '-', color='0.6', lw=0.6)
        ax.scatter(x[:, 0], x[:, 1], s=6, c='k', label='target x', linewidths=0)
        ax.scatter(reached[:, 0], reached[:, 1], s=6, c=COLOURS[name],
                   label='reached f(θ̂)', linewidths=0)
        ax.plot(np.cos(circle), np.sin(circle), 'k:', lw=0.8,
                label='reach of the straight arm')
        ax.set(aspect='equal', xlim=(-0.1, 1.0), ylim=(-0.05, 1.05),
               title='{}:\nwhere the predicted arm lands'.format(TITLES[name]),
               xlabel=X1, ylabel=X2)
        ax.legend(loc='lower left', fontsize=7, markerscale=2)
    return fig


def error_maps(path, arm, models, scaler, names, grid_cells):
    """The end-effector error of each model over a grid of the workspace."""
    x1, x2, grid, ok = reachable_grid(arm, grid_cells)
    fig, axes = plots.subplots(1, len(names), width=3.6, height=3.5,
                               layout='constrained')
    for ax, name in zip(axes[0], names):
        error = np.full(len(grid), np.nan)
        error[ok] = hand_error(arm, predict(name, models[name], scaler, grid[ok]),
                               grid[ok])
        image = error_map(ax, x1, x2, error.reshape(len(x2), len(x1)),
                                TITLES[name], 1e-3, 0.3)
        ax.set(xlabel=X1, ylabel=X2)
    fig.colorbar(image, ax=axes[0].tolist(),
                 label='end-effector error |f(θ̂) − x|\n' + r'(units of $L_1 + L_2$)')
    with files.atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')
    plots.plt.close(fig)


def markdown(metrics):
    rows = []
    for name, m in metrics['models'].items():
        rows.append([TITLES[name],
                     '—' if m['nll'] is None else '{:.3f}'.format(m['nll']),
                     '—' if m['nll'] is None else '{:+.3f}'.format(m['gap']),
                     '{:.4f}'.format(m['rms_mode']), '{:.4f}'.format(m['rms_mean']),
                     '{:.1%}'.format(m['branches_mixed']),
                     '{:.0f}'.format(m['train_seconds'])])
    ref = metrics['reference']
    rows.append(['exact inverse kinematics (reference)', '—', '—',
                 '{:.4f}'.format(ref['rms_exact_ik']), '—', '—', '—'])
    lines = ['Bayes limit H(θ\\|x) = {:.4f} nats (quadrature); mean of −log p(θ\\|x) '
             'over this test set = {:.4f} ± {:.4f}.'.format(
                 metrics['bayes_limit'], ref['test_set_bayes_nll'],
                 ref['test_set_bayes_nll_se']), '',
             *files.markdown_table(
                 ['model', 'held-out NLL', 'gap to Bayes limit',
                  'end-effector RMS, mode', 'end-effector RMS, mean', 'branches mixed',
                  'train s'], rows), '']
    corr = metrics['by_correlation']
    lines += ['Held-out NLL by ρ, the within-branch posterior correlation '
              '\\|corr(θ1, θ2)\\| at the true angles (1 on the rim):', '',
              *files.markdown_table(
                  ['subset', 'points', 'Bayes, −log p(θ\\|x)']
                  + [TITLES[n] for n in corr['nll']],
                  [[label, corr['points'][i], '{:.3f}'.format(corr['bayes'][i])]
                   + ['{:.3f}'.format(corr['nll'][n][i]) for n in corr['nll']]
                   for i, label in enumerate(corr['subsets'])])]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = make_parser()
    args = check_args(parser, parser.parse_args(argv))
    start = time.time()
    arm = robot_arm.RobotArm(args.noise)
    seeds = np.random.SeedSequence(args.seed).spawn(4 + len(MODELS))
    data = {}
    for key, n, seed in (('', args.train_points, seeds[0]), ('_val', args.val_points, seeds[1]),
                         ('_test', args.test_points, seeds[2])):
        data['theta' + key], data['x' + key] = arm.sample(n, np.random.default_rng(seed))
    scaler = preprocess.Standardizer(data['x'], data['theta'])
    scaled = {'x': scaler.inputs(data['x']), 'theta': scaler.targets(data['theta']),
              'x_val': scaler.inputs(data['x_val']),
              'theta_val': scaler.targets(data['theta_val'])}

    names = ['least_squares', 'per_dimension'] + ['joint_' + c for c in args.covariance]
    models, metrics, mixed = {}, {}, {}
    bayes, h_x, mass = arm.limits()
    x, theta = data['x_test'], data['theta_test']
    exact = (-arm.log_likelihood(x, theta) + arm.log_volume
             + np.log(arm.marginal_density(x)))
    correlation = posterior_correlation(arm, theta)
    subsets = [('ρ < 0.5', correlation < 0.5),
               ('0.5 ≤ ρ < 0.9', (correlation >= 0.5) & (correlation < 0.9)),
               ('ρ ≥ 0.9 (near the rim)', correlation >= 0.9)]
    by_corr = {'subsets': [s[0] for s in subsets],
               'points': [int(s[1].sum()) for s in subsets],
               'bayes': [float(exact[s[1]].mean()) for s in subsets], 'nll': {}}
    # On a terminal only, leaving no line behind: an error stays one line.
    bar = tqdm(total=len(names) * args.epoch, desc='training', unit='epoch',
               leave=False, disable=None, dynamic_ncols=True)
    for i, name in enumerate(names):
        bar.set_postfix_str(name)
        model = build(name, args, np.random.default_rng(seeds[4 + MODELS.index(name)]))
        # A diverging run's overflows are reported once, by Diverged.
        try:
            with np.errstate(over='ignore', invalid='ignore'):
                history = train_model(model, scaled, args, seed=args.seed + i,
                                      progress=bar.update)
        except train_custom_loop.Diverged as e:
            bar.close()
            # Before anything is written: --out keeps what it held.
            parser.error('{} (--lr {}): {}'.format(TITLES[name], args.lr, e))
        models[name] = model
        found, two_valued, mixed[name] = model_metrics(name, model, arm, scaler, x,
                                                       theta, bayes)
        if found['nll'] is not None:
            by_corr['nll'][name] = [
                train_custom_loop.heldout_nll(model, x[s], theta[s], scaler)
                for _, s in subsets]
        metrics[name] = dict(found, best_val_loss=history['best_val_loss'],
                             best_epoch=history['best_epoch'],
                             train_seconds=round(history['seconds'], 2))
        tqdm.write('{:>14}: {}'.format(name, {k: (round(v, 4) if isinstance(v, float)
                                                  else v)
                                              for k, v in metrics[name].items()}))
    bar.close()

    exact_ik = arm.inverse_kinematics(x)
    best_branch = np.minimum(hand_error(arm, exact_ik[0], x), hand_error(arm, exact_ik[1], x))
    result = {
        'problem': {'l1': arm.l1, 'l2': arm.l2, 'theta1_range': list(arm.theta1_range),
                    'theta2_range': list(arm.theta2_range), 'noise_sigma': arm.sigma},
        'bayes_limit': bayes, 'entropy_x': h_x, 'quadrature_mass': mass,
        'units': 'NLL in nats per point, angles in radians; end-effector error in '
                 'the units of the link lengths (L1 + L2 = 1)',
        'reference': {'test_set_bayes_nll': float(exact.mean()),
                      'test_set_bayes_nll_se': float(exact.std() / np.sqrt(len(exact))),
                      'rms_exact_ik': rms(best_branch),
                      'two_valued_fraction': float(two_valued.mean())},
        'models': metrics, 'by_correlation': by_corr,
        'config': cli.recorded_options(args),
        'device': str(args.device), 'versions': mdn.versions(),
    }
    os.makedirs(args.out, exist_ok=True)
    figures(args.out, arm, data, models, scaler, names, args.grid,
            mixed['per_dimension'])
    result['wall_seconds'] = round(time.time() - start, 1)
    files.write_json(os.path.join(args.out, 'metrics.json'), result)
    with files.atomic_write(os.path.join(args.out, 'results.md')) as f:
        f.write(markdown(result))
    print(markdown(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
