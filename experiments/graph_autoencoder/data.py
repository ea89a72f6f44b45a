"""The graph-autoencoder benchmark's datasets and a fixed-budget batcher (experiment 1).

Datasets (Satorras, Hoogeboom, Welling, *E(n) Equivariant Graph Neural Networks*, ICML 2021,
arXiv 2102.09844, repository ``vgsatorras/egnn``, ``ae_datasets/d_creator.py``), each graph a
dense symmetric ``uint8[n, n]`` adjacency with zero diagonal:

* :func:`erdos_renyi_dataset`: G(n, p) with p = 0.25 and equal numbers of graphs per size
  n in {7, ..., 16} (whole cycles over the sizes, then shuffled). With the benchmark's
  counts (multiples of 10) the graphs are *identical* to the benchmark's: same Python
  ``random.Random(seed)`` stream, same edge order as ``networkx.gnp_random_graph``, same
  final shuffle (checked against networkx in the tests).
* :func:`community_small_dataset`: two communities with sizes drawn i.i.d. uniform from
  {6, ..., 10} (12-20 nodes in all), G(c, 0.7) inside each community, each cross pair an edge
  with probability 0.01, and one edge between the communities' first nodes if none was drawn.
  As in the benchmark, community i is drawn with the fixed seed i (so all communities of one
  size and slot are the same graph; ``fixed_intra_seeds=False`` draws them fresh), sizes and
  cross edges from ``numpy.random.RandomState(seed)``: identical to the benchmark's graphs.
* :func:`splits`: train/val/test lists, 5000/500/500 from seeds 0/1/2 by default.

Batching (:class:`GraphBatcher`): every batch has the same padded shapes, so one compiled step
serves all of them: ``B = batch_size`` graph slots plus one padding graph, ``B * n_max + 1``
node slots and by default ``B * n_max * (n_max - 1)`` edge slots (the most ``B`` graphs of at
most ``n_max`` nodes can have). :meth:`GraphBatcher.batch_at` is a pure function of
``(seed, step)``; :meth:`GraphBatcher.iterate_once` walks the split in order for evaluation.

Data parallelism (several devices or processes): a jraph batch is one graph of all its graphs,
so its node and edge arrays cannot be cut into equal row blocks. :meth:`GraphBatcher.indices_at`
gives the graphs of a training batch, :meth:`GraphBatcher.make_slots` pads a block of them
(possibly none) on its own, and :func:`stack_blocks` stacks the blocks of one process: graph
leaves along a new leading block axis, per-graph leaves concatenated.
"""

from __future__ import annotations

import random
from typing import Iterator, NamedTuple, Sequence

import jax
import numpy as np

from sympe_jax import graphs

__all__ = [
    "DATASETS",
    "erdos_renyi_dataset",
    "community_small_dataset",
    "splits",
    "validate_adjacency",
    "max_edges_per_batch",
    "Batch",
    "GraphBatcher",
    "stack_blocks",
]


# ----------------------------------------------------------------------------- datasets


def _gnp_edges(rng: random.Random, n: int, p: float) -> np.ndarray:
    """``networkx.gnp_random_graph(n, p, seed=rng)`` as a dense uint8 adjacency.

    Same draws in the same order (one ``rng.random()`` per pair ``i < j`` in
    ``itertools.combinations`` order), so the same graph for the same generator state.
    """
    adj = np.zeros((n, n), np.uint8)
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < p:
                adj[i, j] = adj[j, i] = 1
    return adj


def erdos_renyi_dataset(num_graphs: int, seed: int, p: float = 0.25, n_min: int = 7,
                        n_max: int = 16) -> list[np.ndarray]:
    """Erdős–Rényi graphs with equal numbers per size, as in the EGNN benchmark.

    Sizes cycle through ``n_min..n_max`` (``num_graphs // num_sizes`` whole cycles, then the
    first ``num_graphs % num_sizes`` sizes once more), each graph G(n, p); then the list is
    shuffled. All draws come from one ``random.Random(seed)``, exactly as the benchmark's
    ``random.seed(seed)`` + ``networkx.gnp_random_graph`` + ``random.shuffle``.

    Args:
      num_graphs: number of graphs (the benchmark: 5000 train, 500 val, 500 test).
      seed: non-negative int (the benchmark: 0 train, 1 val, 2 test).
      p: edge probability.
      n_min, n_max: inclusive range of sizes.
    Returns:
      ``num_graphs`` symmetric ``uint8[n, n]`` adjacencies with zero diagonal.
    """
    _check_count(num_graphs, seed)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    sizes = list(range(n_min, n_max + 1))
    order = sizes * (num_graphs // len(sizes)) + sizes[: num_graphs % len(sizes)]
    rng = random.Random(seed)
    adjs = [_gnp_edges(rng, n, p) for n in order]
    rng.shuffle(adjs)
    return adjs


def _components(adj: np.ndarray) -> list[list[int]]:
    """Connected components, each sorted, ordered by their smallest node (networkx order)."""
    n = adj.shape[0]
    seen = np.zeros(n, bool)
    comps = []
    for start in range(n):
        if seen[start]:
            continue
        seen[start] = True
        comp, frontier = [start], [start]
        while frontier:
            nxt = [int(j) for i in frontier for j in np.flatnonzero(adj[i]) if not seen[j]]
            nxt = sorted(set(nxt))
            seen[nxt] = True
            comp += nxt
            frontier = nxt
        comps.append(sorted(comp))
    return comps


def community_small_dataset(num_graphs: int, seed: int, *, p_in: float = 0.7, p_out: float = 0.01,
                            community_sizes: Sequence[int] = (6, 7, 8, 9, 10), num_communities: int = 2,
                            fixed_intra_seeds: bool = True) -> list[np.ndarray]:
    """Community-small graphs, as in the EGNN benchmark (``DatasetCommunity``).

    Per graph: community sizes drawn i.i.d. uniform from ``community_sizes``; community i is
    G(c_i, p_in) drawn with ``random.Random(i)`` (the benchmark's fixed ``seed=i``; with
    ``fixed_intra_seeds=False`` from the graph's own stream instead); the disjoint union's
    connected components (two, unless a community is disconnected) are then joined: every
    pair of nodes in two different components is an edge with probability ``p_out``, and if
    no such edge was drawn, their smallest nodes are joined. Sizes and cross edges come from
    ``numpy.random.RandomState(seed)``, in the benchmark's order.

    Args:
      num_graphs: number of graphs.
      seed: non-negative int.
    Returns:
      ``num_graphs`` symmetric ``uint8[n, n]`` adjacencies, n in 12..20 by default.
    """
    _check_count(num_graphs, seed)
    if not (0.0 <= p_in <= 1.0 and 0.0 <= p_out <= 1.0):
        raise ValueError(f"p_in and p_out must lie in [0, 1], got {p_in} and {p_out}")
    if num_communities < 1 or not community_sizes or min(community_sizes) < 1:
        raise ValueError("need num_communities >= 1 and positive community_sizes")
    state = np.random.RandomState(seed)
    intra = random.Random(seed)
    adjs = []
    for _ in range(num_graphs):
        c_sizes = state.choice(list(community_sizes), num_communities)
        n = int(np.sum(c_sizes))
        adj = np.zeros((n, n), np.uint8)
        offset = 0
        for i, c in enumerate(c_sizes):
            rng = random.Random(i) if fixed_intra_seeds else intra
            adj[offset:offset + c, offset:offset + c] = _gnp_edges(rng, int(c), p_in)
            offset += c
        comps = _components(adj)
        for a in range(len(comps)):
            for b in range(a + 1, len(comps)):
                draws = state.rand(len(comps[a]) * len(comps[b])).reshape(len(comps[a]), len(comps[b])) < p_out
                if draws.any():
                    rows, cols = np.nonzero(draws)
                    u, v = np.asarray(comps[a])[rows], np.asarray(comps[b])[cols]
                    adj[u, v] = adj[v, u] = 1
                else:
                    adj[comps[a][0], comps[b][0]] = adj[comps[b][0], comps[a][0]] = 1
        adjs.append(adj)
    return adjs


DATASETS = {"erdos_renyi": erdos_renyi_dataset, "community_small": community_small_dataset}


def splits(name: str, sizes: Sequence[int] = (5000, 500, 500), seeds: Sequence[int] = (0, 1, 2),
           **kwargs) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Train, validation and test lists of a benchmark dataset, each split from its own seed.

    Args:
      name: ``"erdos_renyi"`` or ``"community_small"``.
      sizes: numbers of graphs (train, val, test).
      seeds: one seed per split (the benchmark's 0, 1, 2).
      **kwargs: passed to the dataset function (e.g. ``p``, ``n_max``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    if len(sizes) != 3 or len(seeds) != 3:
        raise ValueError(f"need three sizes and three seeds (train, val, test), got {sizes} and {seeds}")
    if len(set(seeds)) != 3:
        raise ValueError(f"the splits need distinct seeds, got {seeds}")
    make = DATASETS[name]
    return tuple(make(size, seed, **kwargs) for size, seed in zip(sizes, seeds))


def _check_count(num_graphs: int, seed: int) -> None:
    if int(num_graphs) != num_graphs or num_graphs < 1:
        raise ValueError(f"num_graphs must be a positive int, got {num_graphs}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")


# ----------------------------------------------------------------------------- batching


def validate_adjacency(adj, n_max: int | None = None, index: int | None = None) -> np.ndarray:
    """Check one simple undirected graph and return it as ``uint8[n, n]``.

    Raises:
      ValueError: not a square matrix, no nodes, NaN/Inf, entries other than 0/1, a
        self-loop, not symmetric, or more than ``n_max`` nodes. The message names the graph
        (``index``) and the offending entry.
    """
    where = "" if index is None else f"graph {index}: "
    adj = np.asarray(adj)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"{where}adjacency must be a square matrix, got shape {adj.shape}")
    n = adj.shape[0]
    if n == 0:
        raise ValueError(f"{where}a graph needs at least one node")
    if n_max is not None and n > n_max:
        raise ValueError(f"{where}{n} nodes, more than n_max = {n_max}")
    if adj.dtype == bool:
        adj = adj.astype(np.uint8)
    if not np.issubdtype(adj.dtype, np.number):
        raise ValueError(f"{where}adjacency must be numeric, got dtype {adj.dtype}")
    if np.issubdtype(adj.dtype, np.floating) and not np.all(np.isfinite(adj)):
        raise ValueError(f"{where}adjacency contains NaN or Inf")
    if not np.all((adj == 0) | (adj == 1)):
        raise ValueError(f"{where}adjacency entries must be 0 or 1")
    if np.any(np.diagonal(adj)):
        i = int(np.argmax(np.diagonal(adj) != 0))
        raise ValueError(f"{where}self-loop at node {i}: graphs here are simple")
    asym = adj != adj.T
    if np.any(asym):
        i, j = (int(k) for k in np.argwhere(asym)[0])
        raise ValueError(f"{where}adjacency is not symmetric: A[{i}, {j}] = {adj[i, j]} but A[{j}, {i}] = {adj[j, i]}")
    return adj.astype(np.uint8)


def pad_dense(adjs: Sequence[np.ndarray], n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Adjacencies zero-padded to a common size: (float32[G, n_max, n_max], bool[G, n_max] node mask)."""
    sizes = np.array([np.shape(a)[0] for a in adjs], np.int64)
    if sizes.size and sizes.max() > n_max:
        raise ValueError(f"graph {int(sizes.argmax())} has {int(sizes.max())} nodes > n_max = {n_max}")
    dense = np.zeros((len(adjs), n_max, n_max), np.float32)
    for i, (a, n) in enumerate(zip(adjs, sizes)):
        dense[i, :n, :n] = a
    return dense, np.arange(n_max)[None, :] < sizes[:, None]


def max_edges_per_batch(adjs: Sequence[np.ndarray], batch_size: int, *, complete: bool = False) -> int:
    """Directed message edges of the ``batch_size`` graphs with the most: a budget no batch can exceed.

    Pass it (for the union of all splits) as ``GraphBatcher(..., n_edge=...)`` to shrink the
    edge budget from the worst case ``B * n_max * (n_max - 1)``: ER(0.25) graphs use about a
    quarter of it, and message passing cost scales with the edge slots. With ``complete`` the
    message edges are all ordered pairs, ``n (n - 1)`` per graph (``GraphBatcher(...,
    complete=True)``), so the budget is that of the ``batch_size`` largest graphs.
    """
    counts = np.sort([a.shape[0] * (a.shape[0] - 1) if complete else int(np.count_nonzero(a))
                      for a in map(np.asarray, adjs)])[::-1]
    return int(np.sum(counts[:batch_size]))


class Batch(NamedTuple):
    """One padded batch of ``B`` graph slots (shapes fixed by the batcher).

    Attributes:
      graph: padded ``GraphsTuple``: nodes float32[B * n_max + 1, 1] (1 for real nodes, 0 for
        padding), ``n_edge`` edge slots, ``B + 1`` graphs (the padding graph holds all the
        padding nodes and edges; in a short evaluation batch it is graph ``k`` and the empty
        graphs after it are padding too).
      adjacency: float32[B, n_max, n_max] targets (zero outside each graph's n x n block).
      mask: bool[B, n_max], True for the real nodes of each graph (the first ``sizes[b]``).
      sizes: int32[B] nodes per graph (0 for empty slots).
      graph_mask: bool[B], False for the empty slots of a short final batch.
      indices: int32[B] index of each graph in the split (-1 for empty slots).
    """

    graph: graphs.GraphsTuple
    adjacency: np.ndarray
    mask: np.ndarray
    sizes: np.ndarray
    graph_mask: np.ndarray
    indices: np.ndarray


class GraphBatcher:
    """Padded batches of one split with a fixed padding budget.

    Every batch has ``batch_size`` graph slots (+1 padding graph), ``batch_size * n_max + 1``
    node slots and ``n_edge`` edge slots, so a jitted step compiles once.

    Training order: epoch ``e`` visits the split in the order of a permutation drawn from
    ``numpy.random.default_rng([seed, e])``, ``steps_per_epoch = ceil(len / batch_size)``
    batches per epoch; the last batch of an epoch has empty slots (``graph_mask`` False) when
    ``batch_size`` does not divide the split size, so every graph is seen exactly once per
    epoch (``drop_remainder=True`` instead uses ``len // batch_size`` full batches and skips
    the leftover graphs of each epoch's permutation). :meth:`batch_at` depends only on
    ``(step, seed)``, so a run resumes exactly from its step counter.

    Args:
      adjs: the split, dense 0/1 symmetric adjacencies without self-loops, each at most
        ``n_max`` nodes (checked: ``ValueError`` naming the graph).
      batch_size: graph slots per batch.
      n_max: largest graph size (dense block size and per-graph node budget).
      n_edge: edge slots per batch; default ``batch_size * n_max * (n_max - 1)`` (always
        enough). A smaller budget must hold the ``batch_size`` densest graphs of the split
        (see :func:`max_edges_per_batch`), so no batch can overflow later.
      drop_remainder: see above.
      complete: message-passing edges are all ordered pairs of distinct nodes of each graph,
        with the adjacency entry as edge feature (``graph.edges`` float32[n_edge, 1], 0 on
        padding edges): ``graphs.from_adjacency(..., complete=True)``, the EGNN benchmark's
        message graph. The edge budget must then hold ``n (n - 1)`` slots per graph (the
        default does).
    """

    def __init__(self, adjs: Sequence[np.ndarray], batch_size: int, n_max: int, *,
                 n_edge: int | None = None, drop_remainder: bool = False, complete: bool = False):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size}")
        if int(n_max) != n_max or n_max < 1:
            raise ValueError(f"n_max must be a positive int, got {n_max}")
        if len(adjs) == 0:
            raise ValueError("cannot batch an empty split")
        if drop_remainder and len(adjs) < batch_size:
            raise ValueError(f"drop_remainder with {len(adjs)} graphs < batch_size {batch_size} gives no batch")
        self.batch_size, self.n_max, self.drop_remainder = int(batch_size), int(n_max), drop_remainder
        self.adjs = [validate_adjacency(a, n_max, i) for i, a in enumerate(adjs)]
        self.num_graphs = len(self.adjs)
        self.complete = bool(complete)
        self._graphs = [graphs.from_adjacency(a, complete=self.complete) for a in self.adjs]
        needed = max_edges_per_batch(self.adjs, self.batch_size, complete=self.complete)
        self.n_node = self.batch_size * self.n_max + 1
        self.n_edge = self.batch_size * self.n_max * (self.n_max - 1) if n_edge is None else int(n_edge)
        if self.n_edge < needed:
            raise ValueError(f"n_edge = {self.n_edge} is too small: the {self.batch_size} "
                             f"{'largest' if complete else 'densest'} graphs of this split have {needed} "
                             f"directed {'pairs' if complete else 'edges'}")
        self.n_graph = self.batch_size + 1
        self.sizes = np.array([a.shape[0] for a in self.adjs], np.int32)
        self._dense, _ = pad_dense(self.adjs, self.n_max)
        self._perm_cache: tuple[tuple[int, int], np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Batches per training epoch."""
        if self.drop_remainder:
            return self.num_graphs // self.batch_size
        return -(-self.num_graphs // self.batch_size)

    @property
    def num_eval_batches(self) -> int:
        """Batches yielded by :meth:`iterate_once`."""
        return -(-self.num_graphs // self.batch_size)

    def epoch_permutation(self, epoch: int, seed: int) -> np.ndarray:
        """int64[num_graphs]: the visiting order of epoch ``epoch`` (pure in ``(epoch, seed)``)."""
        key = (int(seed), int(epoch))
        if self._perm_cache is None or self._perm_cache[0] != key:
            self._perm_cache = (key, np.random.default_rng(list(key)).permutation(self.num_graphs))
        return self._perm_cache[1]

    def batch_at(self, step: int, seed: int) -> Batch:
        """The training batch of global step ``step`` (0-based) for data seed ``seed``.

        Epoch ``step // steps_per_epoch``, position ``step % steps_per_epoch`` in that epoch's
        permutation. A pure function of ``(step, seed)``.
        """
        if int(step) != step or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        perm = self.epoch_permutation(epoch, seed)
        return self.make_batch(perm[pos * self.batch_size:(pos + 1) * self.batch_size])

    def indices_at(self, step: int, seed: int) -> np.ndarray:
        """int64[batch_size]: the graphs of :meth:`batch_at` ``(step, seed)`` in slot order, -1 for
        the empty slots of a short batch (trailing). A pure function of ``(step, seed)``."""
        if int(step) != step or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        chosen = self.epoch_permutation(epoch, seed)[pos * self.batch_size:(pos + 1) * self.batch_size]
        out = np.full(self.batch_size, -1, np.int64)
        out[:chosen.shape[0]] = chosen
        return out

    def make_slots(self, indices: Sequence[int]) -> Batch:
        """The padded batch of ``batch_size`` slots holding graph ``indices[s]`` in slot ``s``.

        ``indices`` has ``batch_size`` entries: graphs first, then -1 for empty slots (a block
        of a short batch, as cut from :meth:`indices_at`); all -1 gives a batch without real
        graphs (its first graph has no node, the second holds the padding). The same shapes
        and dtypes as :meth:`make_batch`, which it calls when there is at least one graph.
        """
        indices = np.asarray(indices, np.int64).reshape(-1)
        if indices.shape[0] != self.batch_size:
            raise ValueError(f"make_slots needs {self.batch_size} slot indices, got {indices.shape[0]}")
        k = int(np.sum(indices >= 0))
        if np.any(indices[:k] < 0) or np.any(indices[k:] != -1):
            raise ValueError(f"slot indices must be graphs first, then -1 for empty slots, got {indices.tolist()}")
        if k:
            return self.make_batch(indices[:k])
        empty = graphs.GraphsTuple(
            nodes=np.zeros((0, 1), np.float32), edges=np.zeros((0, 1), np.float32) if self.complete else None,
            globals=None, senders=np.zeros(0, np.int32), receivers=np.zeros(0, np.int32),
            n_node=np.zeros(1, np.int32), n_edge=np.zeros(1, np.int32))
        b, n = self.batch_size, self.n_max
        return Batch(graph=graphs.pad(empty, n_node=self.n_node, n_edge=self.n_edge, n_graph=self.n_graph),
                     adjacency=np.zeros((b, n, n), np.float32), mask=np.zeros((b, n), bool),
                     sizes=np.zeros(b, np.int32), graph_mask=np.zeros(b, bool), indices=np.full(b, -1, np.int32))

    def iterate_once(self) -> Iterator[Batch]:
        """Every graph of the split once, in order (for evaluation); the last batch may be short."""
        for start in range(0, self.num_graphs, self.batch_size):
            yield self.make_batch(np.arange(start, min(start + self.batch_size, self.num_graphs)))

    def make_batch(self, indices: Sequence[int]) -> Batch:
        """The padded batch holding graphs ``indices`` (at most ``batch_size``) in slots 0..k-1."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        k = indices.shape[0]
        if not 1 <= k <= self.batch_size:
            raise ValueError(f"a batch holds 1..{self.batch_size} graphs, got {k}")
        if indices.min() < 0 or indices.max() >= self.num_graphs:
            raise ValueError(f"graph indices must lie in 0..{self.num_graphs - 1}")
        graph = graphs.pad(graphs.batch([self._graphs[i] for i in indices]),
                           n_node=self.n_node, n_edge=self.n_edge, n_graph=self.n_graph)
        b, n = self.batch_size, self.n_max
        adjacency = np.zeros((b, n, n), np.float32)
        adjacency[:k] = self._dense[indices]
        sizes = np.zeros(b, np.int32)
        sizes[:k] = self.sizes[indices]
        all_indices = np.full(b, -1, np.int32)
        all_indices[:k] = indices
        return Batch(graph=graph, adjacency=adjacency, mask=np.arange(n)[None, :] < sizes[:, None],
                     sizes=sizes, graph_mask=np.arange(b) < k, indices=all_indices)


def stack_blocks(blocks: Sequence[Batch]) -> Batch:
    """One process's share of a data-parallel batch: ``len(blocks)`` padded batches of ``b``
    slots each (same batcher, e.g. :meth:`GraphBatcher.make_slots`) as one :class:`Batch`
    whose ``graph`` leaves have a leading block axis ``[len(blocks), ...]`` and whose
    per-graph leaves (``adjacency``, ``mask``, ...) are concatenated, ``[len(blocks) * b, ...]``
    (block ``j`` holds rows ``j * b .. (j + 1) * b - 1``)."""
    if not blocks:
        raise ValueError("stack_blocks needs at least one block")
    graph = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *[blk.graph for blk in blocks])
    rest = {f: np.concatenate([np.asarray(getattr(blk, f)) for blk in blocks]) for f in Batch._fields[1:]}
    return Batch(graph=graph, **rest)
