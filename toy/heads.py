"""The MDN's other heads: a mixture per output dimension, and full covariance.

Both are `toy.mdn.MDN`s with another head layout, loss and sampler; they
share its constructor, `mixture` and checks.
"""
import chainer.functions as F

from toy import loss, mixture
from toy.mdn import MDN


class PerDimensionMDN(MDN):
    """A separate K-component mixture per output dimension, as in the
    WorldModels MDN-RNN: p(y|x) = prod_d sum_k pi_dk N(y_d; mu_dk, sigma_dk^2).

    The head emits, per dimension d, [K logits | K means | K ln_var]: D * 3K
    numbers. The dimensions are independent given x, so this density cannot
    tie the choice of branch in one dimension to that in another.
    """

    @staticmethod
    def head_size(k, d):
        return 3 * k * d

    def spread_components(self, y, shrink=0.1):
        raise NotImplementedError('spread_components knows the head of MDN only; '
                                  'this head is laid out per dimension')

    def forward(self, x):
        """-> logits, mu, ln_var, each (N, D, K), as Variables."""
        h = F.reshape(self.features(x), (-1, self.out_dim, 3 * self.k))
        return F.split_axis(h, 3, axis=2)

    def objective(self, x, y):
        """Mean over N of the sum over d of 1-D mixture NLLs, a Variable."""
        # The fused 1-D loss on N * D rows: its mean over rows times D is
        # the mean over N of the sum over d.
        h = F.reshape(self.features(x), (-1, 3 * self.k))
        return loss.nll_fused_packed(h, y.reshape(-1, 1), self.k) * self.out_dim

    def sample(self, x, n=1, temperature=1.0, rng=None):
        """n draws per row, (N, n, D): each dimension drawn from its own mixture."""
        logits, mu, ln_var = self.mixture(x)
        rows, d, k = logits.shape
        y = mixture.sample(logits.reshape(rows * d, k), mu.reshape(rows * d, k, 1),
                   ln_var.reshape(rows * d, k, 1), n=n, temperature=temperature,
                   rng=rng)
        return y.reshape(rows, d, n).transpose(0, 2, 1)

    def point_estimate(self, x, how='mode'):
        """(N, D): per dimension, its most probable component's mean or its mean."""
        logits, mu = self.mixture(x)[:2]
        rows, d, k = logits.shape
        return mixture.POINT_ESTIMATES[how](logits.reshape(rows * d, k),
                                    mu.reshape(rows * d, k, 1)).reshape(rows, d)


class FullCovarianceMDN(MDN):
    """p(y|x) = sum_k pi_k N(y; mu_k, L_k L_k^T), L_k lower triangular with
    a positive diagonal (a Cholesky factor per component).

    The head emits [K logits | K*D means | K*D log L_dd | K*D(D-1)/2 entries
    below the diagonal] (row-major, as `loss.nll_full_covariance`). The NLL
    is composed of Chainer functions (no fused form).
    """

    @staticmethod
    def head_size(k, d):
        return k * (1 + 2 * d + d * (d - 1) // 2)

    def spread_components(self, y, shrink=0.1):
        raise NotImplementedError('spread_components knows the head of MDN only; '
                                  'this head holds Cholesky factors')

    def forward(self, x):
        """-> logits (N, K), mu (N, K, D), log_diag (N, K, D),
        lower (N, K, D(D-1)/2), as Variables."""
        k, d = self.k, self.out_dim
        logits, mu, log_diag, lower = F.split_axis(
            self.features(x), (k, k + k * d, k + 2 * k * d), axis=1)
        return (logits, F.reshape(mu, (-1, k, d)), F.reshape(log_diag, (-1, k, d)),
                F.reshape(lower, (-1, k, d * (d - 1) // 2)))

    def objective(self, x, y):
        """Mean NLL of y (N, D) given x, a Variable."""
        return loss.nll_full_covariance(*self.forward(x), y)

    def sample(self, x, n=1, temperature=1.0, rng=None):
        """n draws of y per input row: (N, n, D). See `sample_full`."""
        return mixture.sample_full(*self.mixture(x), n=n, temperature=temperature,
                           rng=rng)
