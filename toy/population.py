"""R independent MDNs of one architecture as one Chainer Link, trained together.

A `Population` stacks each layer's parameters along a leading member axis, W
(R, n_out, n_in) and b (R, n_out), so a forward pass is one batched product
per layer on (R, B, .) instead of R small ones: at the published size a step
costs mostly Chainer's bookkeeping per node, which the members then share.

Members share the hidden widths, activation, in_dim, out_dim and ln_var_min;
each has its own K <= K_max. The head emits K_max (1 + 2D) numbers per
member: member r's first K_r (1 + 2D) are laid out as its own mdn.MDN's
packed head, [logits (K_r) | mu (K_r D) | ln_var (K_r D)], the rest is
padding. The members' NLLs come from one node, `loss.nll_fused_members`:
the arithmetic of the node mdn.MDN.objective trains with, on each member's
own rows and columns, so a member's loss is exactly its K_r-component NLL
and its gradient its solo gradient. A member is computed apart from the
others: bit for bit the same whatever they are, as long as K_max (the
head's width) is the same, for BLAS may round a product of another shape
differently; against a solo MDN, too, only the products may round
differently. The padding, never read, gets a gradient of exactly 0, so it
keeps the zeros `from_models` gives it (Adam moves nothing whose moments
are 0). `fit_population` is `train_custom_loop.fit` for a population, its
quantile start included (a member's objective then is
mdn.MDN.quantile_start's on the same columns).
"""
import math
import time

import numpy as np

import chainer
import chainer.functions as F
from chainer import backend
from chainer.functions.math.matmul import MatMul

from toy import loss, mdn, nets, preprocess
from toy.train_custom_loop import (ChainedShuffle, check_quantile_start,
                                   diverged_message, epoch_batches, schedule)


class _StackedProduct(MatMul):
    """F.matmul(h, W, transb=True) for h (R, B, n_in), W (R, n_out, n_in).

    At n_in = 1 (a 1-D problem's input layer) each product is an outer one,
    formed by broadcasting: the same numbers, for NumPy's matmul takes a slow
    loop over such a stack (several times the time at the published size).
    The gradients are MatMul's."""

    def forward(self, inputs):
        h, W = inputs
        if h.shape[-1] != 1:
            return super().forward(inputs)
        self.retain_inputs((0, 1))
        return h * W.swapaxes(-1, -2),


class StackedLinear(chainer.Link):
    """R independent Linear layers, h (R, B, n_in) -> (R, B, n_out), with
    W (R, n_out, n_in) and b (R, n_out): member r's are laid out as L.Linear's."""

    def __init__(self, W, b):
        super().__init__()
        with self.init_scope():
            self.W = chainer.Parameter(W)
            self.b = chainer.Parameter(b)

    def forward(self, h):
        product, = _StackedProduct(transb=True).apply((h, self.W))
        return product + F.expand_dims(self.b, 1)


def _architecture(model):
    """What members must share to be stacked."""
    return {'in_dim': model.in_dim, 'out_dim': model.out_dim,
            'activation': model.activation, 'ln_var_min': model.ln_var_min,
            'hidden': [len(getattr(model, name).W.array) for name in model.layers],
            'dtype': model.head.W.dtype}


class Population(chainer.Chain):
    """R mdn.MDN of one architecture, member r with K = ks[r], as one Link.

    Each member starts as mdn.MDN(in_dim, out_dim, hidden, ks[r], activation,
    rng=rngs[r], ln_var_min=ln_var_min) would (rngs None: NumPy's global
    generator, as MDN's default); `from_models` stacks models already made.
    Data are (R, B, .): member r reads x[r] (B, in_dim) and y[r] (B, D).
    """

    # The walk through the layers is every model's (Perceptron's): it only
    # calls self.layers in turn, and StackedLinear takes (R, B, .).
    hidden_output = nets.Perceptron.hidden_output
    features = nets.Perceptron.features

    def __init__(self, ks, in_dim=1, out_dim=1, hidden=256, activation='none',
                 ln_var_min=None, rngs=None):
        ks = list(ks)
        rngs = [None] * len(ks) if rngs is None else list(rngs)
        if len(rngs) != len(ks):
            raise ValueError('a population of {} members needs {} rngs, got {}'
                             .format(len(ks), len(ks), len(rngs)))
        self._stack([mdn.MDN(in_dim, out_dim, hidden, k, activation, rng=rng,
                             ln_var_min=ln_var_min) for k, rng in zip(ks, rngs)])

    @classmethod
    def from_models(cls, models):
        """The population of these mdn.MDN (one architecture, nll='fused'),
        member r a copy of models[r]'s parameters, on models[0]'s device."""
        population = cls.__new__(cls)
        population._stack(list(models))
        return population

    def _stack(self, models):
        if not models:
            raise ValueError('a population needs at least one model')
        for r, model in enumerate(models):
            if type(model) is not mdn.MDN:
                raise TypeError('model {} is a {}, not an mdn.MDN: a population '
                                'stacks MDNs'.format(r, type(model).__name__))
            if model.nll is not loss.nll_fused:
                raise ValueError("model {} trains another loss: a population trains "
                                 "nll_fused; build it with nll='fused'".format(r))
        shared = _architecture(models[0])
        for r, model in enumerate(models):
            if _architecture(model) != shared:
                raise ValueError('model {} is {} but model 0 is {}: members share '
                                 'all but K'.format(r, _architecture(model), shared))
        super().__init__()
        first = models[0]
        self.ks = tuple(model.k for model in models)
        self.k_max = max(self.ks)
        self.in_dim, self.out_dim = first.in_dim, first.out_dim
        self.activation, self.ln_var_min = first.activation, first.ln_var_min
        self.layers = list(first.layers)
        self.widths = shared['hidden']
        to_cpu = backend.CpuDevice().send
        with self.init_scope():
            for name in self.layers:
                setattr(self, name, StackedLinear(
                    *(np.stack([to_cpu(getattr(getattr(m, name), p).array)
                                for m in models]) for p in ('W', 'b'))))
            W = np.zeros((len(models), mdn.MDN.head_size(self.k_max, self.out_dim),
                          self.widths[-1]), dtype=shared['dtype'])
            b = np.zeros(W.shape[:2], dtype=W.dtype)
            for r, model in enumerate(models):
                W[r, :len(model.head.W.array)] = to_cpu(model.head.W.array)
                b[r, :len(model.head.b.array)] = to_cpu(model.head.b.array)
            self.head = StackedLinear(W, b)
        self.to_device(first.device)

    def __len__(self):
        """R, the number of members."""
        return len(self.ks)

    def member(self, r):
        """Member r as an mdn.MDN on this population's device: its own K and
        a copy of its parameters (the head's padding rows dropped), for every
        function that takes a model (checkpoint.save, heldout_nll, ...)."""
        r = range(len(self))[r]
        # Its random initial weights are overwritten: an rng of its own keeps
        # NumPy's global stream untouched.
        model = mdn.MDN(self.in_dim, self.out_dim, self.widths, self.ks[r],
                        self.activation, rng=np.random.default_rng(0),
                        ln_var_min=self.ln_var_min)
        for name in self.layers + ['head']:
            layer = getattr(model, name)
            for p in ('W', 'b'):
                theirs, mine = getattr(layer, p), getattr(getattr(self, name), p)
                theirs.array[...] = backend.CpuDevice().send(mine.array[r, :len(theirs)])
        return model.to_device(self.device)

    def check_data(self, x, y, what='data'):
        """x (R, N, in_dim) and y (R, N, D), one array (or sequence of rows)
        per member, as float32 arrays on their own device; each member's
        checked as its own model checks it (Perceptron.check_data), and all
        of one length N. ValueError naming `what` and the member otherwise."""
        if len(x) != len(self) or len(y) != len(self):
            raise ValueError('{}: x and y need one array per member, {} each; got {} '
                             'and {}'.format(what, len(self), len(x), len(y)))
        checked = []
        for r in range(len(self)):
            try:
                checked.append(nets.Perceptron.check_data(self, x[r], y[r]))
            except ValueError as e:
                raise ValueError('{}, member {}: {}'.format(what, r, e))
        lengths = sorted({len(a) for a, _ in checked})
        if len(lengths) > 1:
            raise ValueError('{}: the members have {} rows: every member needs the '
                             'same number'.format(what, ' or '.join(map(str, lengths))))
        xp = backend.get_array_module(checked[0][0])
        return tuple(xp.stack([pair[i] for pair in checked]) for i in (0, 1))

    def member_nll(self, x, y, members=None):
        """Mean NLL of each member in `members` (indices; default all) over its
        own batch, nats per point: a Variable (len(members),), from one
        `loss.nll_fused_members` node.

        x (R, B, in_dim), y (R, B, D) arrays on the population's device;
        checked (`check_data`) unless chainer.config.type_check is off, as
        Perceptron.loss does. A member left out costs no loss; the gradient
        of its rows is 0 (that of its parameters too, unless its activations
        are inf: 0 * inf is NaN).
        """
        if chainer.config.type_check:
            x, y = self.check_data(x, y)
        h, ks = self.features(x), self.ks
        if members is not None and list(members) != list(range(len(self))):
            rows = self.xp.asarray(list(members), dtype=np.int64)
            h, y, ks = h[rows], y[rows], [ks[r] for r in members]
        return loss.nll_fused_members(h, y, ks, ln_var_min=self.ln_var_min)

    def member_quantile_start(self, x, y, members=None):
        """Each member's quantile-start objective (mdn.MDN.quantile_start) over
        its own batch, as `member_nll` gives each one's NLL: a node per member
        (it trains the first epochs only)."""
        if chainer.config.type_check:
            x, y = self.check_data(x, y)
        # A node per member, not one over all R B rows: a mean over R B rows
        # folds 1 / (R B) into each gradient, which rounds unlike a member's
        # own 1 / B (a member would then depend on R).
        h = F.separate(self.features(x), axis=0)          # R x (B, K_max (1 + 2D))
        members = range(len(self)) if members is None else members
        return F.stack([self._quantile_start(h[r], y[r], r) for r in members])

    def _head(self, h, r):
        """Member r's own head output, its mdn.MDN's packed one, from the
        population's h (B, K_max (1 + 2D)): the padding columns dropped."""
        columns = mdn.MDN.head_size(self.ks[r], self.out_dim)
        return h[:, :columns] if columns < h.shape[1] else h

    def _quantile_start(self, h, y, r):
        """Member r's quantile-start objective from the head output h."""
        return mdn.quantile_start_loss(
            *mdn.unpack(self._head(h, r), self.ks[r], self.out_dim, self.ln_var_min), y)

    def loss(self, x, y, members=None):
        """The sum over `members` (default all) of each one's mean NLL over its
        own batch, a Variable: each member's gradient is its solo gradient."""
        return F.sum(self.member_nll(x, y, members))


def evaluate(population, x, y, members=None, batch=65536):
    """Mean NLL of each member in `members` (default all) over its own data x
    (R, M, in_dim), y (R, M, D), without a graph: a NumPy float64 array
    (len(members),). Summed as train_custom_loop.evaluate sums one model's."""
    x, y = population.check_data(x, y, 'evaluation data')
    to_cpu = backend.CpuDevice().send
    total, m = 0.0, x.shape[1]
    with chainer.no_backprop_mode(), chainer.using_config('train', False), \
            chainer.using_config('type_check', False):
        for start in range(0, m, batch):
            xb = population.device.send(x[:, start:start + batch])
            yb = population.device.send(y[:, start:start + batch])
            nll = population.member_nll(xb, yb, members).array
            total = total + to_cpu(nll).astype(np.float64) * xb.shape[1]
    return total / m


def fit_population(population, xs, ys, xs_val, ys_val, *, epochs, batchsize=None,
                   lr=1e-2, lr_final=1e-4, eval_every=1, seeds, device=None,
                   progress=None, quantile_start=0):
    """train_custom_loop.fit for every member at once: one Adam over the
    stacked parameters (elementwise, so the members stay independent).

    xs (R, N, in_dim), ys (R, N, D) and the validation pair (R, M, .): each
    member trains on its own data, shuffled by ChainedShuffle(seeds[r]),
    batches as `fit` makes them, the step size decaying as in `fit` (shared:
    it depends on the step only). Every `eval_every` epochs and after the
    last each member's validation NLL is measured, and each member ends with
    its own best parameters restored.

    A member whose training loss becomes non-finite is failed (the message
    `fit`'s Diverged would give) and frozen at its best parameters so far
    (the initial ones if it had none): its loss is no longer computed, its
    gradient and Adam moments are held at 0, so it moves no more; the others
    go on exactly as they would without it. A member whose validation NLL
    was never finite is failed too. `progress`, if given, is called with no
    argument after every epoch. The first `quantile_start` epochs train each
    member's quantile-start objective (`Population.member_quantile_start`),
    as `fit` does.

    Returns a dict: epochs, seconds, history (a list of (epoch, [validation
    NLL of each member, None where not measured])) and members, one dict per
    member: k, seed, best_val_loss, best_epoch, iterations (those it was
    trained, up to its failure), failed (None, or why).
    """
    epochs = preprocess.positive_int('epochs', epochs)
    eval_every = preprocess.positive_int('eval_every', eval_every)
    batchsize = preprocess.positive_int('batchsize', batchsize, none_ok=True)
    check_quantile_start(quantile_start, epochs)
    seeds = list(seeds)
    if len(seeds) != len(population):
        raise ValueError('a population of {} members needs {} seeds, got {}'.format(
            len(population), len(population), len(seeds)))
    xs, ys = population.check_data(xs, ys, 'training data')
    xs_val, ys_val = population.check_data(xs_val, ys_val, 'validation data')
    if device is not None:
        population.to_device(device)
    size, n = len(population), xs.shape[1]
    batchsize, per_epoch, iterations, decay = schedule(n, epochs, batchsize, lr,
                                                       lr_final)
    x_dev, y_dev = population.device.send(xs), population.device.send(ys)
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(population)
    shuffles = [ChainedShuffle(seed) for seed in seeds]
    orders = [np.arange(n)] * size
    params = list(population.params())
    best = [p.array.copy() for p in params]
    best_val, best_epoch = [math.inf] * size, [0] * size
    trained, failed, history = [iterations] * size, [None] * size, []
    active, frozen = list(range(size)), None
    # The training losses are summed on the device and looked at once per
    # evaluation, as in `fit`: the set of active members changes only then.
    loss_sum, since = 0, 1
    start = time.time()
    with chainer.using_config('type_check', False):
        for epoch in range(1, epochs + 1):
            if batchsize < n:
                orders = [s(order) for s, order in zip(shuffles, orders)]
            batches = epoch_batches(x_dev, y_dev, np.stack(orders), batchsize,
                                    population.device)
            objective = population.member_quantile_start if epoch <= quantile_start \
                else population.member_nll
            for xb, yb in batches:
                losses = objective(xb, yb, active)
                population.cleargrads()
                F.sum(losses).backward()
                if frozen is not None:
                    # 0 * inf in a frozen member's products would be NaN.
                    for p in params:
                        p.grad[frozen] = 0
                optimizer.update()
                optimizer.hyperparam.alpha *= decay
                loss_sum = loss_sum + losses.array
            if progress is not None:
                progress()
            if epoch % eval_every and epoch != epochs:
                continue
            sums = backend.CpuDevice().send(loss_sum)
            for r, value in zip(active, sums.tolist()):
                if not math.isfinite(value):
                    failed[r] = diverged_message(value, since, epoch, per_epoch)
                    trained[r] = epoch * per_epoch
                    for p, kept in zip(params, best):
                        p.array[r] = kept[r]
                        for moment in p.update_rule.state.values():
                            moment[r] = 0
            active = [r for r in active if failed[r] is None]
            frozen = population.xp.asarray(
                [r for r in range(size) if failed[r] is not None]) if len(
                    active) < size else None
            loss_sum, since = 0, epoch + 1
            if not active:
                break
            val = evaluate(population, xs_val, ys_val, active)
            measured = dict(zip(active, val.tolist()))
            history.append((epoch, [measured.get(r) for r in range(size)]))
            for r, value in measured.items():
                if value < best_val[r]:
                    best_val[r], best_epoch[r] = value, epoch
                    for p, kept in zip(params, best):
                        kept[r] = p.array[r]
    for r in range(size):
        if failed[r] is None and best_epoch[r] == 0:
            failed[r] = ('the validation loss was never finite: the model does not '
                         'fit the validation data')
    for p, kept in zip(params, best):
        p.array[...] = kept
    return {'epochs': epochs, 'seconds': time.time() - start, 'history': history,
            'members': [{'k': k, 'seed': seed, 'best_val_loss': v, 'best_epoch': e,
                         'iterations': i, 'failed': f} for k, seed, v, e, i, f in zip(
                             population.ks, seeds, best_val, best_epoch, trained,
                             failed)]}
