"""The layout's rules, read from the source: one direction of imports, no path tricks."""
import ast
import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The modules that define models and their math: a model imports no loop and no figure.
MODELS = ('mdn', 'heads', 'nets', 'mixture', 'loss')
#: The one file loaded by path: the fetched upstream script, which is not ours.
LOADS_UPSTREAM = 'experiments/published_seeds.py'


def sources(*folders):
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(ROOT, folder, '*.py'))):
            yield os.path.relpath(path, ROOT), ast.parse(open(path).read())


def top_level_imports(tree):
    """Modules imported at module level (not inside a function): dotted names."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update('{}.{}'.format(node.module, a.name) for a in node.names)
            found.add(node.module)
    return found


def all_imports(tree):
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize('path,tree', list(sources('toy')), ids=lambda p: str(p)[:30])
def test_the_library_imports_nothing_above_it(path, tree):
    above = {name for name in all_imports(tree)
             if name.split('.')[0] in ('experiments', 'tests', 'tools')}
    assert not above, (path, above)


@pytest.mark.parametrize('name', MODELS)
def test_a_model_module_imports_no_loop_and_no_figure(name):
    tree = ast.parse(open(os.path.join(ROOT, 'toy', name + '.py')).read())
    imported = top_level_imports(tree)
    banned = {'toy.train', 'toy.train_custom_loop', 'toy.plots', 'matplotlib'}
    assert not {i for i in imported if i in banned or i.split('.')[0] == 'matplotlib'}


def test_the_sweep_engine_knows_no_model_and_no_command_line():
    for name in ('sweep', 'storage'):
        imported = all_imports(ast.parse(open(os.path.join(ROOT, 'toy', name + '.py')).read()))
        assert not imported & {'toy.cli', 'toy.mdn', 'toy.nets', 'toy.heads', 'chainer',
                               'toy.train', 'toy.train_custom_loop', 'toy.preprocess'}, name


@pytest.mark.parametrize('folder', ['toy', 'experiments', 'tools', 'tests'])
def test_no_path_edits_and_no_scripts_loaded_by_path(folder):
    for path, tree in sources(folder):
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                assert not (node.value.attr == 'path' and getattr(node.value.value, 'id', '')
                            == 'sys' and node.attr in ('insert', 'append')), path
            if isinstance(node, ast.Attribute) and node.attr == 'spec_from_file_location':
                assert path == LOADS_UPSTREAM, path


def test_library_modules_stay_small():
    """One idea per module; the losses may be longer (one idea, four forms)."""
    for path, _ in sources('toy'):
        if path != os.path.join('toy', 'loss.py'):
            assert sum(1 for _ in open(os.path.join(ROOT, path))) <= 420, path


def test_the_layout_test_sees_a_violation(tmp_path):
    """The checks above read real imports: a toy module importing experiments is caught."""
    tree = ast.parse('import numpy\nfrom experiments import sweep_mixtures\n'
                     'def f():\n    from toy import plots\n')
    assert 'experiments' in all_imports(tree)
    assert 'toy' not in top_level_imports(tree) and 'toy' in all_imports(tree)
