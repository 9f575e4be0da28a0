"""The README quotes the published toy's numbers as the committed results files hold them."""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*path):
    with open(os.path.join(ROOT, *path), encoding='utf-8') as f:
        return f.read()


def test_the_seed_distribution_table_is_the_committed_summary():
    readme = read('README.md')
    table = [line for line in read('results', 'published', 'summary.md').splitlines()
             if line.startswith('|')]
    assert len(table) == 4
    for line in table:
        assert line in readme, line


def test_the_seed_0_run_is_quoted_as_its_metrics_say():
    readme = read('README.md')
    metrics = json.loads(read('results', 'toy', 'metrics.json'))
    for quoted in ('| MDN NLL, training points | {:.3f} nats per point |'.format(
                       metrics['nll_train']),
                   '| MDN NLL, 10,000 fresh held-out points | {:.3f} nats per point |'
                   .format(metrics['nll_test']),
                   '| least-squares MSE, held-out | {:.4f} |'.format(
                       metrics['baseline_mse_test']),
                   '| {:.1f} s |'.format(metrics['mdn_train_seconds']),
                   '| {:.1f} s on 2 CPU cores |'.format(metrics['wall_seconds']),
                   'seed 0 ends at {:.3f} nats per point'.format(metrics['nll_test'])):
        assert quoted in readme, quoted
