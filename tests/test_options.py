"""Every script spells each shared option one way, read from its own --help."""
import re

import pytest

from toy import cli, mdn

#: Every command of the README's table that trains or reads a model.
SCRIPTS = ['toy.mdn', 'experiments.published_seeds', 'experiments.sweep_mixtures',
           'experiments.close_the_gap', 'experiments.robot_arm',
           'experiments.bishop_demmdn1', 'experiments.otoro_2015',
           'experiments.benchmark', 'experiments.profile_step',
           'experiments.default_search', 'experiments.population_benchmark']


def help_text(name, capsys):
    module = mdn if name == 'toy.mdn' else pytest.importorskip(name)
    with pytest.raises(SystemExit) as e:
        module.main(['--help'])
    assert e.value.code == 0
    return capsys.readouterr().out


def options(text):
    """{tuple of an option's flags: its help text} from argparse's help."""
    found, flags = {}, None
    for line in text.splitlines():
        m = re.match(r'^  (-{1,2}\w[\w-]*(?: \S+)?(?:, -{1,2}\w[\w-]*(?: \S+)?)*)(?:  +(.*))?$',
                     line)
        if m:
            flags = tuple(re.findall(r'(-{1,2}\w[\w-]*)', m.group(1)))
            found[flags] = m.group(2) or ''
        elif flags and line.startswith(' ' * 10):
            found[flags] += ' ' + line.strip()
        else:
            flags = None
    return found


@pytest.mark.parametrize('name', SCRIPTS)
def test_shared_options_have_one_spelling(name, capsys):
    seen = options(help_text(name, capsys))
    spellings = {flag: flags for flags in seen for flag in flags}
    for option, (flags, _, _) in cli.TRAINING_OPTIONS.items():
        present = [f for f in flags if f in spellings]
        if present:
            # The same flags, in the same order (the first is the one shown).
            assert spellings[present[0]] == flags, (name, option)
    for flags in seen:
        # A shared option's spelling is never used for something else.
        for f in flags:
            for shared, _, _ in cli.TRAINING_OPTIONS.values():
                if f in shared:
                    assert flags == shared, (name, flags, shared)
    assert ('--device', '-d') in seen and ('--gpu', '-g') in seen


@pytest.mark.parametrize('name', SCRIPTS)
def test_help_shows_every_default(name, capsys):
    for flags, text in options(help_text(name, capsys)).items():
        if flags in (('-h', '--help'), ('--gpu', '-g')):
            continue
        assert text.count('(default: ') == 1, (name, flags, text)


def test_the_parser_of_a_shared_option_is_the_same_everywhere():
    """-k takes K, --runs a count and --seed a value in every script."""
    parser = cli.ArgumentParser()
    cli.add_training_arguments(parser, k=5, runs=3, seed=7, epoch=2, train_points=10)
    args = parser.parse_args(['--mixtures', '4', '--seeds', '2', '--seed', '9',
                              '--epochs', '3', '--points', '20'])
    assert (args.k, args.runs, args.seed, args.epoch, args.train_points) == (4, 2, 9, 3, 20)
    with pytest.raises(SystemExit):
        parser.parse_args(['--runs', '0'])
