"""experiments/robot_arm.py: a short smoke run, and one-line errors (exit 2)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import toy  # noqa: F401
import chainer

from experiments import robot_arm
from toy import heads, mdn, nets, preprocess
from toy.robot_arm import RobotArm

#: The command line of the experiment, run in a process of its own.
COMMAND = [sys.executable, '-m', 'experiments.robot_arm']
TINY = ['--train-points', '300', '--val-points', '100', '--test-points', '300',
        '--epoch', '2', '--batchsize', '100', '--hidden', '8', '-k', '2',
        '--grid', '8']


def test_smoke_run_writes_metrics_table_and_figures(tmp_path):
    out = tmp_path / 'out'
    assert robot_arm.main(TINY + ['--out', str(out)]) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert set(metrics['models']) == set(robot_arm.MODELS)
    for name, m in metrics['models'].items():
        assert m['rms_mode'] > 0 and 0 <= m['branches_mixed'] <= 1
        assert (m['nll'] is None) == (name == 'least_squares')
    assert abs(metrics['bayes_limit'] - (-3.7132)) < 1e-3
    assert abs(metrics['quadrature_mass'] - 1) < 1e-8
    table = (out / 'results.md').read_text()
    assert 'joint mixture, full covariance' in table and 'exact inverse' in table
    for figure in ('workspace.png', 'arms.png', 'landing.png', 'error_maps.png'):
        assert (out / figure).stat().st_size > 1000
    assert not [p for p in os.listdir(out) if 'tmp' in p]


def test_covariance_choice():
    parser = robot_arm.make_parser()
    args = robot_arm.check_args(parser, parser.parse_args(
        ['--covariance', 'full', 'full']))
    assert args.covariance == ['full']
    assert robot_arm.make_parser().parse_args([]).covariance == ['diag', 'full']


BAD = {
    'covariance': (['--covariance', 'banded'], "invalid choice: 'banded'"),
    'noise': (['--noise', '0'], '--noise: 0 is not a finite number > 0'),
    'noise_nan': (['--noise', 'nan'], '--noise: nan is not a finite number > 0'),
    'lr_text': (['--lr', 'fast'], "--lr: 'fast' is not a number"),
    'batch': (['--train-points', '100', '--batchsize', '101'],
              '--batchsize 101 is larger than the 100 training points'),
    'lr': (['--lr', '1e-3', '--lr-final', '1e-2'], '--lr-final 0.01 is larger'),
    'epoch': (['--epoch', '0'], '--epoch/-e/--epochs: 0 is not >= 1'),
    'device': (['--device', 'tpu'], "unknown device 'tpu'"),
    'memory': (['--train-points', '10000000000000'], 'this run needs about'),
    'seed': (['--seed', '-3'], '--seed: -3 is not in [0, 4294967295]'),
    'out_file': (['--out', 'IS_A_FILE'], 'is a file, not a directory'),
    # The quadrature of the Bayes limit: a negative node count, or too many.
    'noise_huge': (['--noise', '1e30'], '--noise 1e+30 is larger than 0.05, where the '
                   'quadrature of the Bayes limit holds: use --noise 0.05 or less'),
    'noise_tiny': (['--noise', '1e-30'], 'or a larger --noise'),
    'diverged': (TINY + ['--lr', '1e30'], 'least squares (--lr 1e+30): the training '
                 'loss became non-finite'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_argument_is_one_line_exit_2(case, tmp_path, capsys):
    earlier = tmp_path / 'metrics.json'
    earlier.write_text('{"kept": true}')
    args, message = BAD[case]
    (tmp_path / 'IS_A_FILE').write_text('x')
    args = [str(tmp_path / a) if a == 'IS_A_FILE' else a for a in args]
    with pytest.raises(SystemExit) as stop:
        robot_arm.main(['--out', str(tmp_path)] + args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1, err
    assert earlier.read_text() == '{"kept": true}'


def test_out_is_a_file_from_the_command_line(tmp_path):
    target = tmp_path / 'file'
    target.write_text('x')
    result = subprocess.run(COMMAND + ['--out', str(target)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and 'is a file' in result.stderr
    assert target.read_text() == 'x'


def test_a_diverging_run_is_one_line_from_the_command_line(tmp_path):
    out = tmp_path / 'out'
    result = subprocess.run(COMMAND + [*TINY, '--lr', '1e30', '--out',
                             str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and 'became non-finite' in result.stderr, \
        result.stderr
    assert not out.exists()


def test_each_model_is_built_as_its_name_says():
    args = robot_arm.make_parser().parse_args(['-k', '3', '--hidden', '4'])
    kinds = {'least_squares': nets.LeastSquares, 'per_dimension': heads.PerDimensionMDN,
             'joint_diag': mdn.MDN, 'joint_full': heads.FullCovarianceMDN}
    for name in robot_arm.MODELS:
        model = robot_arm.build(name, args, np.random.default_rng(0))
        assert type(model) is kinds[name]
    # The head's size tells diagonal from full covariance: K (1 + 2D) against
    # K (1 + 2D + D (D - 1) / 2).
    assert robot_arm.build('joint_diag', args, None).head.b.shape == (3 * 5,)
    assert robot_arm.build('joint_full', args, None).head.b.shape == (3 * 6,)


# ---------------------------------------------------------------------------
# The metrics on a constructed case: models whose mixtures are the exact
# inverse kinematics, so every metric has a value known without training.
# ---------------------------------------------------------------------------

ARM = RobotArm()
#: Each component's standard deviation in radians, and the elbow-up weight.
SIGMA, PI_UP = 0.05, 0.7


def branches(scaler, xs):
    """Both exact solutions (2, N, 2) for standardised inputs xs, standardised
    as the models' targets are."""
    xs = xs.array if isinstance(xs, chainer.Variable) else xs
    up_down = ARM.inverse_kinematics(xs * scaler.x_scale + scaler.x_mean)
    return (up_down - scaler.y_mean) / scaler.y_scale


class Exact(object):
    """A K = 2 head over (theta1, theta2) whose output is a fixed function
    `head_from(mu, n)` of both exact solutions mu (2, N, 2), standardised."""

    def __init__(self, scaler):
        super().__init__(in_dim=2, out_dim=2, hidden=1, k=2)
        self.scaler = scaler

    def features(self, xs):
        mu = branches(self.scaler, xs)
        return chainer.Variable(self.head_from(mu, mu.shape[1]).astype(np.float32))


class ExactJoint(Exact, mdn.MDN):
    """A joint diagonal mixture (the script's MDN): elbow up with weight
    PI_UP and elbow down, each N(exact solution, SIGMA^2 I) in radians."""

    def head_from(self, mu, n):
        ln_var = np.log(SIGMA ** 2) - 2 * np.log(self.scaler.y_scale)
        return np.concatenate([np.tile(np.log([PI_UP, 1 - PI_UP]), (n, 1)),
                               mu.transpose(1, 0, 2).reshape(n, 4),
                               np.tile(ln_var, (n, 2))], axis=1)


class MixedPerDimension(Exact, heads.PerDimensionMDN):
    """A per-dimension mixture whose most probable theta1 is elbow up's and
    whose most probable theta2 is elbow down's, at every position."""

    def head_from(self, mu, n):
        per_dim = []
        for d, logits in ((0, [0.0, -1.0]), (1, [-1.0, 0.0])):
            per_dim += [np.tile(logits, (n, 1)), mu[:, :, d].T,
                        np.full((n, 2), np.log(SIGMA ** 2) - 2 * np.log(
                            self.scaler.y_scale[d]))]
        return np.concatenate(per_dim, axis=1)


def two_valued_angles(n, rng):
    """n elbow-up angles whose positions have both solutions inside the angle
    box and the elbow well bent (theta2 at least 0.3 from pi)."""
    found = []
    while len(found) < n:
        theta = np.stack([rng.uniform(*ARM.theta1_range, 4 * n),
                          rng.uniform(np.pi / 2, np.pi - 0.3, 4 * n)], axis=-1)
        other = ARM.inverse_kinematics(ARM.forward_kinematics(theta))[1]
        inside = (other[:, 0] > 0.3 + 1e-3) & (other[:, 0] < 1.2 - 1e-3)
        found += list(theta[inside])
    return np.array(found[:n])


@pytest.fixture(scope='module')
def case():
    rng = np.random.default_rng(5)
    theta_train, x_train = ARM.sample(2000, rng)
    scaler = preprocess.Standardizer(x_train, theta_train)
    theta = two_valued_angles(400, rng)
    return scaler, ARM.forward_kinematics(theta), theta


def test_the_constructed_positions_are_two_valued_and_reached_exactly(case):
    scaler, x, theta = case
    up, down = ARM.inverse_kinematics(x)
    np.testing.assert_allclose(up, theta, atol=1e-9)
    assert np.all((down[:, 0] > 0.3) & (down[:, 0] < 1.2) & (down[:, 1] > np.pi + 0.3))


def test_metrics_of_the_exact_joint_mixture(case):
    scaler, x, theta = case
    found, two_valued, mixed = robot_arm.model_metrics(
        'joint_diag', ExactJoint(scaler), ARM, scaler, x, theta, bayes=-3.0)
    assert two_valued.all() and not mixed.any()
    assert found['branches_mixed'] == 0
    # The most probable component is elbow up, the true angles: f reaches x.
    assert found['rms_mode'] < 1e-5 and found['rms_theta_nearest_solution'] < 1e-5
    up, down = ARM.inverse_kinematics(x)
    mean = PI_UP * up + (1 - PI_UP) * down
    reached = np.stack([0.8 * np.cos(mean[:, 0]) - 0.2 * np.cos(mean.sum(1)),
                        0.8 * np.sin(mean[:, 0]) - 0.2 * np.sin(mean.sum(1))], -1)
    assert found['rms_mean'] == pytest.approx(
        np.sqrt(np.mean(np.sum((reached - x) ** 2, axis=1))), rel=1e-4)
    assert found['rms_mean'] > 0.05
    # -log of the two-component density at the true angles, in radians.
    log_p = logsumexp(np.log([PI_UP, 1 - PI_UP]) + norm.logpdf(
        theta[:, None, :], np.stack([up, down], axis=1), SIGMA).sum(-1), axis=1)
    assert found['nll'] == pytest.approx(-log_p.mean(), rel=1e-4)
    assert found['gap'] == pytest.approx(-log_p.mean() + 3.0, rel=1e-4)


def test_predictions_are_in_radians(case):
    scaler, x, theta = case
    model = ExactJoint(scaler)
    up, down = ARM.inverse_kinematics(x)
    np.testing.assert_allclose(robot_arm.predict('joint_diag', model, scaler, x, 'mode'),
                               up, atol=1e-5)
    np.testing.assert_allclose(robot_arm.predict('joint_diag', model, scaler, x, 'mean'),
                               PI_UP * up + (1 - PI_UP) * down, atol=1e-5)


def test_metrics_of_a_per_dimension_mixture_that_pairs_the_branches(case):
    scaler, x, theta = case
    found, two_valued, mixed = robot_arm.model_metrics(
        'per_dimension', MixedPerDimension(scaler), ARM, scaler, x, theta, bayes=0.0)
    assert two_valued.all() and mixed.all()
    assert found['branches_mixed'] == 1
    up, down = ARM.inverse_kinematics(x)
    paired = np.stack([up[:, 0], down[:, 1]], axis=-1)
    reached = ARM.forward_kinematics(paired)
    assert found['rms_mode'] == pytest.approx(
        np.sqrt(np.mean(np.sum((reached - x) ** 2, axis=1))), rel=1e-4)


def test_branch_mixing_on_known_predictions(case):
    """A quarter of the positions get theta1 of one branch and theta2 of the
    other; a quarter of them are made one-valued (the elbow nearly straight)."""
    scaler, x, theta = case
    up, down = ARM.inverse_kinematics(x)
    straight = ARM.forward_kinematics(np.stack([theta[:, 0], np.full(len(x), np.pi - 0.1)],
                                               axis=-1))
    n = len(x)
    x = np.concatenate([x[:3 * n // 4], straight[3 * n // 4:]])
    up, down = ARM.inverse_kinematics(x)
    guess = up.copy()
    guess[: n // 4, 1] = down[: n // 4, 1]            # theta1 up, theta2 down
    guess[n // 4: n // 2] = down[n // 4: n // 2]      # the other branch, whole
    two_valued, mixed = robot_arm.branch_mixing(ARM, x, guess)
    np.testing.assert_array_equal(two_valued, np.arange(n) < 3 * n // 4)
    np.testing.assert_array_equal(mixed, np.arange(n) < n // 4)


# ---------------------------------------------------------------------------
# The figures: every model, angles in radians, the targets' marker explained
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def drawn(case):
    """Each model of the figures: exact ones and an (untrained) least-squares net."""
    scaler, x, theta = case
    models = {'least_squares': nets.LeastSquares(in_dim=2, out_dim=2, hidden=4,
                                                rng=np.random.default_rng(0)),
              'per_dimension': MixedPerDimension(scaler),
              'joint_diag': ExactJoint(scaler), 'joint_full': ExactJoint(scaler)}
    return scaler, x, theta, models


def test_landing_draws_every_model_the_joint_diagonal_one_included(drawn):
    """landing.png left out the joint diagonal mixture."""
    scaler, x, theta, models = drawn
    names = list(models)
    fig = robot_arm.landing_figure(ARM, models, scaler, names, x[:50])
    titles = [ax.get_title().split(':')[0] for ax in fig.axes]
    assert titles == [robot_arm.TITLES[n] for n in names]
    joint_diag = fig.axes[names.index('joint_diag')]
    # The exact mixture's most probable arm lands on its targets.
    reached = next(c for c in joint_diag.collections if c.get_label() == 'reached f(θ̂)')
    np.testing.assert_allclose(reached.get_offsets(), x[:50], atol=1e-4)
    robot_arm.plots.plt.close(fig)


def test_angles_are_labelled_in_radians_and_the_targets_marker_is_explained(drawn):
    """θ axes lacked 'rad'; the × marking the targets was in no legend."""
    scaler, x, theta, models = drawn
    show = np.arange(200)
    workspace = robot_arm.workspace_figure(ARM, x, theta, show)
    angles = workspace.axes[1]
    assert angles.get_xlabel() == r'$\theta_1$ (rad)'
    assert angles.get_ylabel() == r'$\theta_2$ (rad)'
    shown = x[:3]
    arms = robot_arm.arms_figure(ARM, models, scaler, list(models), shown, paired=True)
    for ax in arms.axes + [workspace.axes[2]]:
        legend = ax.get_legend()
        texts = [t.get_text() for t in legend.get_texts()]
        handle = legend.legend_handles[texts.index('target x')]
        assert handle.get_marker() == 'x'
        marks = [line for line in ax.get_lines() if line.get_label() == 'target x']
        assert len(marks) == 1 and marks[0].get_marker() == 'x'
    # The targets are marked where they are.
    np.testing.assert_allclose(np.stack(marks[0].get_data(), -1), robot_arm.MIDDLE)
    robot_arm.plots.plt.close(workspace)
    robot_arm.plots.plt.close(arms)
