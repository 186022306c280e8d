"""Split a training set among federated clients: IID shards and Dirichlet(α) label skew."""

import numpy as np

from wrapkit.common.checks import check_count, check_positive_float

__all__ = ["dirichlet_partition", "iid_partition"]


def iid_partition(num_samples, num_clients, seed, per_client=None):
    """Disjoint, equally sized shards of a seeded permutation.

    Parameters
    ----------
    num_samples : int
        Size of the training set.
    num_clients : int
        Number of shards.
    seed : int
        Seed of the permutation.
    per_client : int, optional
        Samples per client (default: ``num_samples // num_clients``, the rest unused).

    Returns
    -------
    list of numpy.ndarray
        One sorted int64 index array per client.

    Raises
    ------
    ValueError
        When the shards do not fit in the set.
    """
    num_clients = check_count("num_clients", num_clients)
    per = num_samples // num_clients if per_client is None else check_count("per_client",
                                                                              per_client)
    if per < 1 or per * num_clients > num_samples:
        raise ValueError(f"{num_clients} clients × {per} samples do not fit in "
                         f"{num_samples} training samples")
    order = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(order[i * per:(i + 1) * per]) for i in range(num_clients)]


def dirichlet_partition(labels, num_clients, alpha, seed, min_size=1):
    """Label-skewed shards: each class is divided among the clients in proportions drawn
    from Dir(α·1) (Hsu et al. 2019); every sample goes to exactly one client.

    Small α gives each client few classes; α → ∞ approaches IID. Draws are repeated (same
    generator) until every client holds at least ``min_size`` samples.

    Parameters
    ----------
    labels : array_like of int
        Class label per training sample.
    num_clients : int
    alpha : float > 0
    seed : int
    min_size : int
        Fewest samples a client may get.

    Returns
    -------
    list of numpy.ndarray
        One sorted int64 index array per client.
    """
    labels = np.asarray(labels)
    num_clients = check_count("num_clients", num_clients)
    alpha = check_positive_float("alpha", alpha)
    if num_clients * min_size > len(labels):
        raise ValueError(f"{num_clients} clients need at least {num_clients * min_size} "
                         f"samples, the set has {len(labels)}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(1000):
        shards = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            share = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(share)[:-1] * len(idx)).astype(np.int64)
            for shard, part in zip(shards, np.split(idx, cuts)):
                shard.append(part)
        out = [np.sort(np.concatenate(s)).astype(np.int64) for s in shards]
        if min(len(s) for s in out) >= min_size:
            return out
    raise ValueError(f"Dirichlet({alpha}) left a client with fewer than {min_size} samples "
                     f"in 1000 draws; use fewer clients or a larger alpha")
