"""The README and docs/ quote the committed results as the files hold them, link only to
what exists, and speak to a newcomer (no issue numbers, no first person, no work rounds)."""
import glob
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in
                               glob.glob(os.path.join(ROOT, 'docs', '*.md')))
#: A number as quoted in prose or a table: sign (ASCII or Unicode minus), thousands
#: separators, decimals; not a part of a word, a version or a file name.
NUMBER = re.compile(r'(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])'
                    r'|(?<![\w.])[-−]?\d+(?:\.\d+)?(?![\w.]?\w)')
LINK = re.compile(r'\]\(([^)\s]+)\)')


def read(*path):
    with open(os.path.join(ROOT, *path), encoding='utf-8') as f:
        return f.read()


def prose(text):
    """text with line breaks as spaces, so a sentence split over lines still matches."""
    return ' '.join(text.split())


def section(text, heading):
    """The lines under the first heading matching `heading`, up to the next heading."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith('#') and re.search(heading, line))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith('#')),
               len(lines))
    return '\n'.join(lines[start + 1:end])


def numbers(text):
    """The numbers quoted in text, outside link targets, as normalised strings."""
    text = LINK.sub('', text)
    return [m.group().replace('−', '-').replace(',', '') for m in NUMBER.finditer(text)]


def leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def backed(quoted, file_numbers, file_values):
    """Whether a quoted number appears in a results file: verbatim in its text, or as a
    JSON value rounded to the quoted precision (an integer only as an integer)."""
    if quoted in file_numbers:
        return True
    decimals = len(quoted.partition('.')[2])
    for value in file_values:
        if decimals == 0 and value != int(value):
            continue
        if '{:.{}f}'.format(value, decimals) == quoted:
            return True
    return False


def test_the_seed_distribution_table_is_the_committed_summary():
    readme = read('README.md')
    table = [line for line in read('results', 'published', 'summary.md').splitlines()
             if line.startswith('|')]
    assert len(table) == 4
    for page in (readme, read('docs', 'published_toy.md')):
        for line in table:
            assert line in page.splitlines(), line


def test_the_seed_0_run_is_quoted_as_its_metrics_say():
    page = prose(read('docs', 'published_toy.md'))
    metrics = json.loads(read('results', 'toy', 'metrics.json'))
    for quoted in ('| MDN NLL, training points | {:.3f} nats per point |'.format(
                       metrics['nll_train']),
                   '| MDN NLL, 10,000 fresh held-out points | {:.3f} nats per point |'
                   .format(metrics['nll_test']),
                   '| least-squares MSE, held-out | {:.4f} |'.format(
                       metrics['least_squares_mse_test']),
                   '| {:.1f} s |'.format(metrics['mdn_train_seconds']),
                   '| {:.1f} s on 2 CPU cores |'.format(metrics['wall_seconds']),
                   'seed 0 ends at {:.3f} nats per point'.format(metrics['nll_test'])):
        assert quoted in page, quoted


def test_every_number_of_the_readme_published_toy_headline_is_in_the_results():
    headline = section(read('README.md'), r'^#+ The published toy experiment')
    summary = read('results', 'published', 'summary.md')
    metrics = json.loads(read('results', 'toy', 'metrics.json'))
    file_numbers = set(numbers(summary))
    quoted = numbers(headline)
    # The headline quotes the seed table, the limits, and the seed-0 run's numbers.
    assert len(quoted) > 30
    for number in ('-1.821', '-0.714', '{:.3f}'.format(metrics['nll_test']),
                   '{:.1f}'.format(metrics['wall_seconds'])):
        assert number in quoted, number
    unbacked = [q for q in quoted if not backed(q, file_numbers, list(leaves(metrics)))]
    assert not unbacked, ('numbers in the README\'s published toy headline that neither '
                          'results/published/summary.md nor results/toy/metrics.json '
                          'holds: {}'.format(unbacked))


def test_a_number_that_drifts_from_the_results_is_caught():
    metrics = json.loads(read('results', 'toy', 'metrics.json'))
    values = list(leaves(metrics))
    assert backed('-1.322', set(), values)
    assert not backed('-1.323', set(), values)
    assert not backed('16', set(), values)  # 15.94 s is not an integer quoted as 16
    assert numbers('[x](a/b2.md) −1.5 and 10,000 on py3.11') == ['-1.5', '10000']


def test_the_readme_is_a_short_front_door():
    lines = read('README.md').splitlines()
    assert len(lines) <= 260, 'README.md has {} lines; move details to docs/'.format(
        len(lines))


def test_every_relative_link_of_the_readme_and_docs_exists():
    readme_docs = set()
    for page in PAGES:
        folder = os.path.dirname(os.path.join(ROOT, page))
        for target in LINK.findall(read(page)):
            if re.match(r'[a-z]+:', target) or target.startswith('#'):
                continue
            path = os.path.normpath(os.path.join(folder, target.split('#')[0]))
            assert os.path.exists(path), '{} links to {}, which does not exist'.format(
                page, target)
            if page == 'README.md' and target.endswith('.md') and not target.startswith(
                    'results/'):
                assert target.startswith('docs/'), target
                readme_docs.add(target)
    expected = {'docs/{}.md'.format(name) for name in (
        'published_toy', 'sweep', 'close_the_gap', 'robot_arm', 'speed', 'gpu',
        'reliability', 'layout')}
    assert expected <= readme_docs, expected - readme_docs


#: Words that speak of the project's history or its authors instead of to the reader.
FORBIDDEN = {
    'an issue number': re.compile(r'\bissues? #?\d', re.IGNORECASE),
    'the first person': re.compile(r'\bI (?=[a-z])|\b(?:we|our|ours|us|my)\b',
                                   re.IGNORECASE),
    '"pass" as a round of work': re.compile(
        r'\b(?:the|a|an|this|that|another|first|second|third|next|previous|later|'
        r'earlier|final|hardening|adversarial|review|mutation|clean-?up|audit)\s+'
        r'pass(?:es)?\b(?!\s+(?:over|through))', re.IGNORECASE),
}


def test_no_page_speaks_in_history_or_first_person():
    found = []
    for page in PAGES:
        text = prose(read(page))
        for what, pattern in FORBIDDEN.items():
            found += ['{}: {} ({!r})'.format(page, what, m.group())
                      for m in pattern.finditer(text)]
    assert not found, '\n'.join(found)


def test_the_forbidden_words_are_recognised():
    def flagged(text):
        return [what for what, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert flagged('fixed in issue 8') == ['an issue number']
    assert flagged('I could not read it') == ['the first person']
    assert flagged('what we measured') == ['the first person']
    assert flagged('the hardening pass found it') == ['"pass" as a round of work']
    assert flagged('the adversarial pass\'s survivors') == ['"pass" as a round of work']
    assert not flagged('2000 epochs, passes over the training set; a pass over the data')
    assert not flagged('the tests pass; N(0, 0.01² I) noise; pass --eval-every 5')


def cells(line):
    return [c.strip() for c in line.strip().strip('|').split('|')]


def candidates(folder, key):
    """The table lines of the folder's Markdown summaries that can hold the row named
    `key`, each with the prose around it: every line of a section whose heading names
    `key`, and any line that names it (or whose first cell starts it)."""
    for path in sorted(glob.glob(os.path.join(ROOT, folder, '*.md'))):
        blocks = re.split(r'^(?=#)', read(path), flags=re.M)
        for block in blocks:
            heading, _, body = block.partition('\n')
            table = [line for line in body.splitlines() if line.startswith('|')]
            context = '\n'.join(line for line in body.splitlines()
                                 if not line.startswith('|'))
            for line in table:
                first = cells(line)[0]
                if (key in heading or key in cells(line)
                        or (len(first) > 3 and key.startswith(first))):
                    yield line, context


def row_backed(row, folder):
    """Whether one summary line (with its section's prose) holds every number of a
    README table row, each as quoted or rounded to the quoted precision."""
    wanted = numbers(' '.join(row[1:]))
    for line, context in candidates(folder, row[0]):
        found = numbers(line + '\n' + context)
        values = [float(q) for q in found if '.' in q]
        if all(backed(q, set(found), values) for q in wanted):
            return True
    return False


def folder_numbers(folder):
    """The numbers a results folder's summaries hold: as quoted in its Markdown
    files, and as values, those of its JSON files and of the Markdown's decimals
    (a table's +0.1505 backs a quoted 0.150, but not 0.15 quoted as 0.150). Not
    its CSV files: among their thousands of numbers almost any quote has a match."""
    quoted, values = set(), []
    for path in glob.glob(os.path.join(ROOT, folder, '*')):
        if path.endswith('.md'):
            found = numbers(read(path))
            quoted |= set(found)
            values += [float(q) for q in found if '.' in q]
        elif path.endswith('.json'):
            values += list(leaves(json.loads(read(path))))
    return quoted, values


#: Each headline section of the README beside the results folder it quotes.
HEADLINES = {'How many components': 'results/sweep', 'Closing the gap': 'results/gap',
             "Bishop's robot arm": 'results/robot_arm'}


def test_every_number_of_the_readme_headlines_is_in_its_results():
    readme = read('README.md')
    for heading, folder in HEADLINES.items():
        text = section(readme, '^#+ ' + re.escape(heading))
        assert '({})'.format(folder) in text or '](' + folder in text, (heading, folder)
        arm = json.loads(read('results', 'robot_arm', 'metrics.json'))['models']
        derived = {'12.7': '{:.1f}'.format(arm['least_squares']['rms_mode']
                                           / arm['joint_diag']['rms_mode'])}
        quoted, values = folder_numbers(folder)
        unbacked = [q for q in numbers(text) if not backed(q, quoted, values)
                    and derived.get(q) != q]
        assert not unbacked, 'the README\'s "{}" quotes {} that {} does not hold'.format(
            heading, unbacked, folder)
        rows = [cells(line) for line in text.splitlines()
                if line.startswith('|') and not set(line) <= set('|-: ')][1:]
        assert rows, heading
        for row in rows:
            assert row_backed(row, folder), ('the README\'s "{}" row {} is not a row '
                                             'of {}'.format(heading, row, folder))


def test_a_headline_number_that_drifts_is_caught():
    quoted, values = folder_numbers('results/sweep')
    assert backed('0.150', quoted, values)       # +0.1505 in summary.md
    assert not backed('0.160', quoted, values)
    # In a table row, every number must come from one line: otoro's K = 16 row has
    # +0.0328, and its K = 24 row's +0.0342 does not back a quoted +0.034.
    row = ['otoro', '1.2880', '16', '1.3209 ± 0.0076', '+0.033']
    assert row_backed(row, 'results/sweep')
    assert not row_backed(row[:4] + ['+0.034'], 'results/sweep')
