"""A mixture-count sweep's settings and names (experiments.sweep_mixtures):
`SweepConfig`, the output layout it owns, its grid of points, their keys
and the fingerprint of the options that change a run's result."""
import dataclasses
import os

from toy import cli, datasets, mdn, nets, sweep

DEFAULT_K = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24]
FIELDS = ['dataset', 'direction', 'model', 'k', 'seed', 'config',
          'nll', 'bayes_limit', 'gap_bayes', 'gaussian_limit', 'gap_gaussian',
          'mse', 'val_nll', 'train_seconds', 'epochs', 'best_epoch',
          'iterations', 'device']
#: Options that change a run's result, fingerprinted as its `config`, by the
#: names the studies record.
CONFIG_KEYS = ('hidden', 'activation', 'epochs', 'batchsize', 'lr', 'lr_final',
               'train_points', 'val_points', 'test_points', 'eval_every')
#: Options that change a run's result only when set: fingerprinted then, so
#: the runs made before they existed keep their `config`.
OPTIONAL_CONFIG = ('spread_components', 'sigma_min', 'quantile_start', 'spread_kinks')
#: Where a study records a name this version spells otherwise, and only
#: here: the config's `epochs` is SweepConfig.epoch, and the least-squares
#: baseline's model is 'mse' in keys (and in the points and rows of the
#: studies made before it was `least_squares`; `current` reads those).
RECORDED_OPTION = {'epochs': 'epoch'}
RECORDED_MODEL = {'least_squares': 'mse'}
KEY = ('dataset', 'direction', 'model', 'k', 'seed', 'config')
MAX_RUNS = 100000
FLOOR_FILE = 'mixture_floor.json'
#: `--quick`: the default grid and training on one seed and a tenth of the
#: points (seconds a run, about a minute in all), into a folder of its
#: own (a preview never overwrites the default's results) and against the
#: default sweep's committed K-floors (it waits for none of its own).
QUICK = dict(runs=1, train_points=20000,
             out=os.path.join('results', 'sweep-quick'),
             floor_file=os.path.join('results', 'sweep', FLOOR_FILE))
#: Stored with the study: a study made by another version is refused.
STUDY, META = 'mixture-sweep', {'script': 'sweep_mixtures', 'version': 2,
                                'key': list(KEY), 'config': list(CONFIG_KEYS)}


@dataclasses.dataclass
class SweepConfig:
    """A mixture-count sweep: its grid, its training options, and where its
    files go (all under `out`: results.csv, summary.md, models/, the figures,
    the floors unless `floor_file`, and study.db unless `storage`).

    dataset: names, or ['all']; k: the mixture counts; runs: seeds
    0 .. runs-1 per dataset and K; hidden: an int or a list of widths.
    """
    out: str = os.path.join('results', 'sweep')
    dataset: list = dataclasses.field(default_factory=lambda: list(datasets.NAMES))
    k: list = dataclasses.field(default_factory=lambda: list(DEFAULT_K))
    direction: str = 'inverse'
    runs: int = 3
    hidden: object = dataclasses.field(default_factory=lambda: [64, 64, 64])
    activation: str = 'relu'
    epoch: int = 20
    batchsize: int = 256
    lr: float = 3e-3
    lr_final: float = 3e-5
    train_points: int = 200000
    val_points: int = 5000
    test_points: int = 10000
    eval_every: int = 1
    spread_components: bool = True
    sigma_min: float = None
    quantile_start: int = 2
    spread_kinks: bool = False
    baseline: bool = True
    floors: bool = True
    floor_file: str = None
    recompute_floors: bool = False
    figures: bool = True
    storage: str = None
    device: str = '-1'
    jobs: int = 1
    #: MDN runs of one config and K a worker trains at once (toy.population):
    #: the default grid's 3 problems x 3 seeds, one population per K, which
    #: trains faster than one run at a time (docs/population.md). Not a
    #: config key: a run scores as if trained alone.
    population: int = 9
    retry_failed: bool = False
    remake_models: bool = False

    def __post_init__(self):
        self.dataset = list(datasets.NAMES if 'all' in self.dataset else
                            dict.fromkeys(self.dataset))
        self.k = sorted(set(self.k))
        self.hidden = nets.hidden_option(self.hidden)

    @property
    def results_path(self):
        return os.path.join(self.out, 'results.csv')

    @property
    def summary_path(self):
        return os.path.join(self.out, 'summary.md')

    @property
    def models(self):
        """The folder of the trained models, one file per point."""
        return os.path.join(self.out, 'models')

    @property
    def floor_path(self):
        return self.floor_file or os.path.join(self.out, FLOOR_FILE)

    @property
    def url(self):
        """The storage's URL: --storage, or an SQLite file in out."""
        return self.storage or 'sqlite:///' + os.path.join(self.out, 'study.db')

    def problems(self):
        """What is wrong with these settings, a message per problem ([] if
        nothing), in the command line's words."""
        return [message.format(self) for bad, message in (
            (self.batchsize > self.train_points, '--batchsize {0.batchsize} is '
             'larger than the {0.train_points} training points'),
            (self.lr_final > self.lr, '--lr-final {0.lr_final} is larger than --lr '
             '{0.lr}'),
            (self.quantile_start >= self.epoch, '--quantile-start {0.quantile_start} is '
             'not fewer than --epoch {0.epoch}: the NLL must train after it'),
            (self.eval_every > self.epoch, '--eval-every {0.eval_every} is more than '
             '--epoch {0.epoch}: pass --eval-every {0.epoch} or less'),
            (len(self.dataset) * self.runs * (len(self.k) + 1) > MAX_RUNS,
             'the grid has more than {} runs: use fewer --runs or -k'.format(MAX_RUNS)))
            if bad]

    def memory_needed(self, report_only=False):
        """Rough upper estimate of the bytes the runs at work at once take
        (`jobs` times `population` of them; one for a report): the largest
        K's MDN (cli.training_bytes) over the largest set of rows at once."""
        rows = max(self.batchsize, self.val_points, self.test_points)
        points = self.train_points + self.val_points + self.test_points
        run = cli.training_bytes(nets.hidden_widths(self.hidden),
                                 mdn.MDN.head_size(self.k[-1], 1), rows, points)
        return run * (1 if report_only else self.jobs * self.population)


def config(cfg):
    """{option: value} of the options that change a run's result, by the
    names the studies record."""
    return dict({k: getattr(cfg, RECORDED_OPTION.get(k, k)) for k in CONFIG_KEYS},
                **{k: getattr(cfg, k) for k in OPTIONAL_CONFIG if getattr(cfg, k)})


def config_id(cfg):
    """Short fingerprint of the options that change a run's result."""
    return sweep.fingerprint(config(cfg))


def grid(cfg):
    """The points of this sweep in the order they are trained: seed by seed
    (a sweep stopped early has whole seeds), largest K first within one (the
    longest runs start early, so the workers finish together)."""
    common = dict(config(cfg), config=config_id(cfg), direction=cfg.direction)
    return [dict(common, dataset=name, model=model, k=k, seed=seed)
            for seed in range(cfg.runs)
            for k in sorted(cfg.k + ([0] if cfg.baseline else []), reverse=True)
            for name in cfg.dataset
            for model in ['least_squares' if k == 0 else 'mdn']]


def current(record):
    """A point or row read from a study, as this version names it."""
    stored = {v: k for k, v in RECORDED_MODEL.items()}
    return dict(record, model=stored.get(record.get('model'), record.get('model')))


def key(point):
    """The point's key in the study (its model by its RECORDED_MODEL name)."""
    return '{dataset}-{direction}-{model}-k{k}-seed{seed}-{config}'.format(**dict(
        point, model=RECORDED_MODEL.get(point['model'], point['model'])))


def model_path(cfg, point):
    return os.path.join(cfg.models, key(point) + '.npz')

