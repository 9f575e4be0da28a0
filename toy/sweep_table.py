"""A sweep's study as a table: every finished run's row exported to a CSV
file (toy.sweep keeps the runs), and the check that a CSV is such an export."""
import csv
import os
import sys

from toy import files
from toy.sweep import outcomes


def csv_is_ours(path, fields):
    """Whether `path` is absent, or a file whose header is `fields` (so that
    exporting over it loses nothing but an earlier export)."""
    if not os.path.lexists(path):
        return True
    if not os.path.isfile(path):
        return False
    with open(path, newline='', encoding='utf-8', errors='replace') as f:
        return next(csv.reader(f), None) == fields


def export(study, path, fields, parse, upgrade=None):
    """Write every finished run's row (user attr `row`) to the CSV `path`, and
    return ({key: parse(row)}, {key: failure reason}).

    upgrade(row), if given, renames what an earlier version stored (the row
    as the CSV gets it). parse(row) checks a row and returns what the caller
    needs (e.g. numbers);
    a row it refuses (KeyError, TypeError, ValueError), or with columns other
    than `fields`, is left out with a one-line warning on stderr. Every key
    appears at most once.
    """
    rows, failed, lines = {}, {}, []
    for key, trial in sorted(outcomes(study, warn=True).items()):
        if 'failure' in trial.user_attrs:
            failed[key] = trial.user_attrs['failure']
            continue
        row = trial.user_attrs.get('row')
        try:
            if not isinstance(row, dict) or not set(row) <= set(fields):
                raise ValueError('not a row of this table: {!r:.60}'.format(row))
            row = upgrade(row) if upgrade else row
            rows[key] = parse(row)
        except (KeyError, TypeError, ValueError) as e:
            print('warning: skipping trial {} ({}): {}'.format(trial.number, key, e),
                  file=sys.stderr)
            continue
        lines.append(row)
    with files.atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator='\n')
        writer.writeheader()
        writer.writerows(lines)
    return rows, failed
