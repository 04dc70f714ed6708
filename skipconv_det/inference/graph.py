# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Lattice-domain rewriting of a traced module: which maps travel as kept lattices, and where they materialise.

The module is traced with ``torch.fx`` (convolutions as leaves). Every SkipConv output whose pattern keeps the same
positions in every channel (:func:`~.layout.supports`) becomes a *lattice value*, and so do pointwise operations
on lattice values (activations, identities, sums of two of one pattern). Each consumer then reads a lattice value
in one of three ways (docs/operator.md, "Lattice-domain inference"):

- compactly: a 1x1 stride-1 SkipConv of the same pattern reads only kept positions; a 1x1 stride-2 conv (SkipConv
  or dense) reads only cell (0, 0), which every supported pattern keeps but 'row'/'col' do at half their lattice;
  activations and sums work position by position; shape queries need no values;
- padded: a SkipConv with a larger window (3x3, the 7x7 stem), or stride other than 1 and 2, reads a full map
  inside a zero border, which its lattices' convolutions read in place;
- fully: anything else (pooling, upsampling, dense layers, concatenation, the module's outputs) reads a plain map.

A lattice value with padded or full readers is *materialised* once, by one write (:func:`~.functional.materialise`)
that computes ``act(sum of terms)`` everywhere from the kept lattices and the fills: the activation, residual sum
and border of the layers that were pending on it ride along. Its skipped positions are a fill of its kept ones only
for a linear value (a SkipConv output, or a sum of such); after an activation and a residual sum they chain through
the blocks before (a ResNet stage's block outputs). Where a materialised value needs such skipped positions, the
value whose activation cuts the chain is *tracked*: its skipped lattices are computed too
(:func:`~.functional.track`), only as far back as someone reads them.

Everything else is left as it was, and where the rules cannot show that a consumer reads only kept positions, the
map is materialised: the rewritten graph computes what the original computes.
"""
import operator
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from ..ops import SkipConv2d
from . import functional as L
from .layout import cells_of, kept_lattices, supports

_INF = float('inf')


class LatticeTracer(fx.Tracer):
    """``torch.fx`` tracing with every convolution a leaf (their forwards are not plain traceable code)."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualified_name)


class _Lat(NamedTuple):
    """The static type of a lattice value: its pattern, and its fill if it is linear (else None)."""
    pattern: str
    fill: Optional[str]


class _Rule(NamedTuple):
    """How a node of the rewritten graph computes its value."""
    name: str
    args: tuple = ()


def _clamp_of(node: fx.Node, modules: Dict[str, nn.Module]) -> Optional[Tuple[float, float]]:
    """The node's activation as a clamp (low, high), if it is one of its first argument alone."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return None
    if node.op == 'call_module':
        m = modules[node.target]
        if len(node.args) != 1 or node.kwargs:
            return None
        if type(m) is nn.ReLU:
            return 0.0, _INF
        if type(m) in (nn.ReLU6, nn.Hardtanh):
            return float(m.min_val), float(m.max_val)
        return None
    if node.op == 'call_function':
        if set(node.kwargs) - {'inplace', 'min_val', 'max_val'}:
            return None
        if node.target in (torch.relu, torch.relu_, F.relu) and len(node.args) <= 2:
            return 0.0, _INF
        if node.target is F.relu6 and len(node.args) <= 2:
            return 0.0, 6.0
        if node.target is F.hardtanh:
            low = node.args[1] if len(node.args) > 1 else node.kwargs.get('min_val', -1.0)
            high = node.args[2] if len(node.args) > 2 else node.kwargs.get('max_val', 1.0)
            if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                return float(low), float(high)
        return None
    if node.op == 'call_method' and node.target in ('relu', 'relu_') and len(node.args) == 1 and not node.kwargs:
        return 0.0, _INF
    return None


def _is_identity(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == 'call_module':
        m = modules[node.target]
        return type(m) is nn.Identity or (type(m) in (nn.Dropout, nn.Dropout2d) and not m.training)
    return node.op == 'call_method' and node.target == 'contiguous' and len(node.args) == 1 and not node.kwargs


def _is_add(node: fx.Node) -> bool:
    """A sum of two tensors, without scaling."""
    if set(node.kwargs) - {'alpha'} or node.kwargs.get('alpha', 1) != 1 or len(node.args) != 2:
        return False
    if node.op == 'call_function':
        return node.target in (operator.add, operator.iadd, torch.add)
    return node.op == 'call_method' and node.target in ('add', 'add_', '__add__', '__iadd__')


def _mutates_first_arg(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    """Whether the node changes its first argument in place (which the rewrite must be free to ignore)."""
    if node.op == 'call_module':
        return bool(getattr(modules[node.target], 'inplace', False))
    if node.op == 'call_method':
        return node.target.endswith('_') and not node.target.startswith('__')
    if node.op == 'call_function':
        return node.target in (operator.iadd, torch.relu_) or node.kwargs.get('inplace', False) is True
    return False


def _check_mutations(graph: fx.Graph, modules: Dict[str, nn.Module]) -> None:
    """Refuse graphs where a value changed in place is read again afterwards (through any alias): the rewrite
    computes lattice values functionally, which is only the same where nothing reads the old storage later."""
    order = {node: i for i, node in enumerate(graph.nodes)}
    aliases: Dict[fx.Node, fx.Node] = {}

    def root(node):
        while node in aliases:
            node = aliases[node]
        return node

    for node in graph.nodes:
        if node.args and isinstance(node.args[0], fx.Node) and (_is_identity(node, modules)
                                                                  or _mutates_first_arg(node, modules)):
            aliases[node] = node.args[0]
    group: Dict[fx.Node, List[fx.Node]] = {}
    for node in graph.nodes:
        group.setdefault(root(node), []).append(node)
    for node in graph.nodes:
        if not _mutates_first_arg(node, modules) or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        # The versions before the change: read after it, they would see the old value in the rewritten graph.
        for member in group[root(node.args[0])]:
            if order[member] >= order[node]:
                continue
            for user in member.users:
                if user is not node and order[user] > order[node]:
                    raise NotImplementedError(f'{node.format_node()} changes a value that {user} reads afterwards')


class LatticeGraph:
    """The analysis and rewrite of one traced graph (see the module docstring). ``rewrite()`` returns the new
    graph; ``lattice_values`` counts the nodes that travel as kept lattices."""

    def __init__(self, graph: fx.Graph, root: nn.Module):
        self.graph, self.root = graph, root
        self.modules = dict(root.named_modules())
        _check_mutations(graph, self.modules)
        self.type: Dict[fx.Node, _Lat] = {}  # lattice values only
        self.rule: Dict[fx.Node, _Rule] = {}
        self._type_nodes()

    # Typing ---------------------------------------------------------------------------------------------------

    def _lat(self, arg) -> Optional[_Lat]:
        return self.type.get(arg) if isinstance(arg, fx.Node) else None

    def _skipconv(self, node: fx.Node) -> Optional[nn.Module]:
        m = self.modules.get(node.target) if node.op == 'call_module' else None
        if (isinstance(m, SkipConv2d) and supports(m.skip_pattern, m.shift_channels) and m.padding_mode == 'zeros'
                and not isinstance(m.padding, str) and len(node.args) == 1 and not node.kwargs):
            return m
        return None

    def _max_pool(self, node: fx.Node) -> Optional[tuple]:
        """(kernel, stride, padding, dilation) of a max pool whose every reader is a 1x1 stride-1 SkipConv of one
        pattern (the ResNet stem's): it is computed at that pattern's kept lattices only."""
        if node.op == 'call_module' and type(self.modules[node.target]) is nn.MaxPool2d and len(node.args) == 1:
            m = self.modules[node.target]
            if m.ceil_mode or m.return_indices:
                return None
            params = (m.kernel_size, m.stride, m.padding, m.dilation)
        elif node.op == 'call_function' and node.target is F.max_pool2d:
            bound = dict(zip(('input', 'kernel_size', 'stride', 'padding', 'dilation', 'ceil_mode', 'return_indices'),
                             node.args), **node.kwargs)
            if bound.get('ceil_mode') or bound.get('return_indices'):
                return None
            params = (bound['kernel_size'], bound.get('stride') or bound['kernel_size'], bound.get('padding', 0),
                      bound.get('dilation', 1))
        else:
            return None
        if any(isinstance(p, fx.Node) for p in params):
            return None
        readers = [self._skipconv(u) for u in node.users]
        if not readers or any(r is None or tuple(r.kernel_size) != (1, 1) or tuple(r.stride) != (1, 1)
                              or tuple(r.padding) != (0, 0) for r in readers):
            return None
        if len({r.skip_pattern for r in readers}) != 1 or any(u.args[0] is not node for u in node.users):
            return None
        return tuple(_pair(p) for p in params) + (readers[0].skip_pattern, )

    def _type_nodes(self) -> None:
        for node in self.graph.nodes:
            conv = self._skipconv(node)
            if conv is not None:
                self._type_skipconv(node, conv)
                continue
            pool = self._max_pool(node)
            if pool is not None:
                self.type[node], self.rule[node] = _Lat(pool[-1], None), _Rule('pool_lattices', pool)
                continue
            args = node.args
            x = self._lat(args[0]) if args else None
            clamp = _clamp_of(node, self.modules)
            if x is not None and clamp is not None:
                self.type[node], self.rule[node] = _Lat(x.pattern, None), _Rule('clamp', (clamp, ))
            elif x is not None and _is_identity(node, self.modules):
                self.type[node], self.rule[node] = x, _Rule('identity')
            elif _is_add(node) and (self._lat(args[0]) or self._lat(args[1])):
                a, b = self._lat(args[0]), self._lat(args[1])
                if a is not None and b is not None and a.pattern == b.pattern:
                    fill = a.fill if a.fill is not None and a.fill == b.fill else None
                    self.type[node], self.rule[node] = _Lat(a.pattern, fill), _Rule('add')
                elif (a is None or b is None) and all(isinstance(v, fx.Node) for v in args) and not any(
                        self._lat(v) and self.type[v].pattern != (a or b).pattern for v in args):
                    self.rule[node] = _Rule('add_full')  # a plain map: materialised with the sum
            elif x is not None and self._reads_cell00(node):
                self.rule[node] = _Rule('conv_subsampled', (x.pattern, ))  # a dense 1x1 stride-2 conv
            elif x is not None and node.op == 'call_function' and node.target is getattr and args[1] in (
                    'shape', 'dtype', 'device', 'ndim'):
                self.rule[node] = _Rule('attr')
            elif x is not None and node.op == 'call_method' and node.target in ('size', 'dim'):
                self.rule[node] = _Rule('method')

    def _type_skipconv(self, node: fx.Node, conv: nn.Module) -> None:
        x = self._lat(node.args[0])
        self.type[node] = _Lat(conv.skip_pattern, conv.fill)
        one_by_one = tuple(conv.kernel_size) == (1, 1) and tuple(conv.padding) == (0, 0)
        if one_by_one and tuple(conv.stride) == (1, 1):
            self.rule[node] = _Rule('conv_kept') if x is not None and x.pattern == conv.skip_pattern else \
                _Rule('conv_gathered')
        elif one_by_one and tuple(conv.stride) == (2, 2):
            self.rule[node] = _Rule('conv_subsampled', (x.pattern, )) if x is not None and self._keeps_cell00(x) \
                else _Rule('conv_gathered')
        else:
            self.rule[node] = _Rule('conv_lattices')

    @staticmethod
    def _keeps_cell00(x: _Lat) -> bool:
        return any((0, 0) in cells_of(lattice) for lattice in kept_lattices(x.pattern))

    def _reads_cell00(self, node: fx.Node) -> bool:
        m = self.modules.get(node.target) if node.op == 'call_module' else None
        return (type(m) is nn.Conv2d and tuple(m.kernel_size) == (1, 1) and tuple(m.stride) == (2, 2)
                and tuple(m.padding) == (0, 0) and m.padding_mode == 'zeros' and len(node.args) == 1
                and not node.kwargs and self._keeps_cell00(self.type[node.args[0]]))

    # How each value is read -----------------------------------------------------------------------------------

    def _reads(self, user: fx.Node, value: fx.Node) -> str:
        """How ``user`` reads lattice value ``value``: 'compact', 'padded', 'term' (a summand of the write of a
        plain sum) or 'full'."""
        rule = self.rule.get(user)
        if rule is None or user.op == 'output':
            return 'full'
        if rule.name in ('conv_lattices', 'pool_lattices'):
            return 'padded'
        if rule.name == 'add_full':
            return 'term'
        if rule.name == 'conv_gathered':
            return 'full'
        return 'compact'

    # Writes ---------------------------------------------------------------------------------------------------

    def _expand(self, node: fx.Node, kept: Set[fx.Node]) -> Tuple[List[Tuple[str, fx.Node]], Optional[tuple]]:
        """``node``'s value as ``clamp(sum of terms)``: terms ``(kind, value)`` with kind 'linear', 'explicit' (a
        tracked value) or 'full'. ``kept``: the lattice values whose kept lattices are computed anyway."""
        rule = self.rule[node]
        lat = self.type.get(node)
        if rule.name == 'identity':
            return self._expand(node.args[0], kept)
        if lat is not None and lat.fill is not None and (rule.name != 'add' or node in kept):
            return [('linear', node)], None
        if rule.name == 'clamp':
            terms, clamp = self._expand(node.args[0], kept)
            return ([('explicit', self._resolve(node.args[0]))], rule.args[0]) if clamp is not None else \
                (terms, rule.args[0])
        if rule.name in ('add', 'add_full'):
            terms = []
            for arg in node.args[:2]:
                if arg not in self.type:
                    terms.append(('full', arg))
                    continue
                sub, clamp = self._expand(arg, kept)
                terms += [('explicit', self._resolve(arg))] if clamp is not None else sub
            return terms, None
        raise AssertionError(f'no write for {node.format_node()}')

    def _resolve(self, node: fx.Node) -> fx.Node:
        """The node an identity stands for."""
        while self.rule.get(node, _Rule('')).name == 'identity':
            node = node.args[0]
        return node

    def _fused_activations(self) -> Dict[fx.Node, fx.Node]:
        """Activations of a plain sum (lattice + map) that is read by nothing else: the sum's write applies them."""
        fused = {}
        for node in self.graph.nodes:
            if self.rule.get(node, _Rule('')).name == 'add_full' and len(node.users) == 1:
                user = next(iter(node.users))
                if user.args[0] is node and _clamp_of(user, self.modules) is not None:
                    fused[user] = node
        return fused

    def _plan(self) -> None:
        """Which values are materialised, tracked and carried as kept lattices (a fixpoint: a write's terms need
        their values' kept lattices, and tracking a value needs a write of its own)."""
        self.fused = self._fused_activations()
        activation_of = {sum_node: user for user, sum_node in self.fused.items()}
        compact_readers = ('conv_kept', 'conv_subsampled', 'attr', 'method')
        base = {node.args[0] for node in self.graph.nodes if self.rule.get(node, _Rule('')).name in compact_readers}
        kept, tracked = set(base), set()
        while True:
            writes, track_writes = {}, {}
            for node in self.graph.nodes:
                if node in tracked:
                    track_writes[node] = self._expand(node, kept)
                if node in self.type and any(self._reads(u, node) in ('padded', 'full') for u in node.users):
                    # A tracked value is written from its kept and skipped lattices.
                    writes[node] = ([('explicit', node)], None) if node in tracked else self._expand(node, kept)
                elif self.rule.get(node, _Rule('')).name == 'add_full':
                    terms, _ = self._expand(node, kept)
                    user = activation_of.get(node)
                    writes[node] = (terms, _clamp_of(user, self.modules) if user is not None else None)
            new_kept, new_tracked = set(base), set(tracked)
            for terms, _ in list(writes.values()) + list(track_writes.values()):
                for kind, value in terms:
                    if kind != 'full':
                        new_kept.add(value)
                    if kind == 'explicit':
                        new_tracked.add(value)
            new_kept |= new_tracked
            # Computing a value's kept lattices needs its operands'.
            for node in reversed(list(self.graph.nodes)):
                if node in new_kept and self.rule[node].name in ('clamp', 'identity', 'add', 'conv_kept',
                                                                'conv_subsampled'):
                    new_kept.update(a for a in node.args[:2] if a in self.type)
            if new_kept <= kept and new_tracked == tracked:
                break
            kept, tracked = kept | new_kept, new_tracked
        self.kept, self.tracked, self.writes, self.track_writes = kept, tracked, writes, track_writes

    # Rewrite --------------------------------------------------------------------------------------------------

    @property
    def lattice_values(self) -> int:
        return len(self.type)

    def rewrite(self) -> fx.Graph:
        """The graph computing the same outputs in the lattice domain."""
        self._plan()
        new = fx.Graph()
        lattice: Dict[fx.Node, fx.Node] = {}  # node -> its Lattice value
        full: Dict[fx.Node, fx.Node] = {}  # node -> its plain map (or any non-lattice value)
        padded: Dict[fx.Node, fx.Node] = {}  # node -> its PaddedMap
        module_nodes: Dict[str, fx.Node] = {}
        self._gathered: Dict[tuple, fx.Node] = {}

        def module_of(node):
            if node.target not in module_nodes:
                module_nodes[node.target] = new.get_attr(node.target)
            return module_nodes[node.target]

        def plain(arg):
            return fx.node.map_arg(arg, lambda n: full[n])

        def write_terms(terms):
            return (tuple((kind, self.type[v].pattern if kind != 'full' else None,
                           self.type[v].fill if kind == 'linear' else None) for kind, v in terms),
                    tuple(lattice[v] if kind != 'full' else full[v] for kind, v in terms))

        def padding_for(node):
            """The border, its value and the slack a value's window readers need (one border: the first
            reader's; readers wanting another get a copy, :meth:`_padded_source`)."""
            users = list(node.users)
            users += [u for user in users if user in self.fused for u in user.users]
            specs = [self._window(u) for u in users if self._window(u) is not None]
            if not specs:
                return (0, 0), (0, 0), 0.0
            pad, _, value = specs[0]
            slack = tuple(max(st[k] for p, st, v in specs if (p, v) == (pad, value)) for k in (0, 1))
            return pad, slack, value

        def materialise(node, terms, clamp):
            pad, slack, value = padding_for(node)
            kinds, values = write_terms(terms)
            written = new.call_function(L.materialise, (kinds, values, clamp, pad, value, slack))
            padded[node] = written
            full[node] = new.call_function(L.full_map, (written, ))

        for node in self.graph.nodes:
            rule = self.rule.get(node)
            if node.op == 'output':
                new.output(plain(node.args[0]))
                continue
            if node in self.type:
                if node in self.kept:
                    lattice[node] = self._emit_lattice(new, node, rule, lattice, full, padded, module_of)
                if node in self.tracked:
                    kinds, values = write_terms(self.track_writes[node][0])
                    lattice[node] = new.call_function(
                        L.track, (lattice[node], self.type[node].pattern, kinds, values, self.track_writes[node][1]))
                if node in self.writes:
                    materialise(node, *self.writes[node])
                continue
            if rule is not None and rule.name == 'add_full':
                materialise(node, *self.writes[node])
                continue
            if node in self.fused:
                full[node] = full[self.fused[node]]
                padded[node] = padded[self.fused[node]]
                continue
            if rule is not None and rule.name == 'conv_subsampled':
                full[node] = new.call_function(L.conv_subsampled, (lattice[node.args[0]], rule.args[0],
                                                                     module_of(node)))
                continue
            if rule is not None and rule.name == 'attr':
                full[node] = new.call_function(L.lattice_attr, (lattice[node.args[0]], node.args[1]))
                continue
            if rule is not None and rule.name == 'method':
                full[node] = new.call_function(L.lattice_method, (lattice[node.args[0]], node.target) +
                                               tuple(plain(a) for a in node.args[1:]))
                continue
            full[node] = new.node_copy(node, lambda n: full[n])
        _fuse_epilogues(new)
        # Lattice operations nobody reads (the plain view of a map only convolutions read, say) go; the original
        # nodes stay, whatever their use (an in-place op may matter for its effect alone).
        ours = {getattr(L, name) for name in L.__all__} - {L.release}
        for node in reversed(list(new.nodes)):
            if node.op == 'call_function' and node.target in ours and not node.users:
                new.erase_node(node)
        self._release_after_last_reader(new)
        for node in list(new.nodes):
            if node.op == 'get_attr' and not node.users:
                new.erase_node(node)
        return new

    def _emit_lattice(self, new: fx.Graph, node: fx.Node, rule: _Rule, lattice, full, padded, module_of) -> fx.Node:
        name, arg = rule.name, node.args[0] if node.args else None
        if name == 'conv_lattices':
            return new.call_function(L.conv_lattices, (self._padded_source(new, node, padded, full),
                                                       module_of(node)))
        if name == 'pool_lattices':
            kernel, stride, _, dilation, pattern = rule.args
            return new.call_function(L.pool_lattices, (self._padded_source(new, node, padded, full), pattern,
                                                       kernel, stride, dilation))
        if name == 'conv_kept':
            return new.call_function(L.conv_kept, (lattice[arg], module_of(node)))
        if name == 'conv_gathered':
            conv = self.modules[node.target]
            key = (arg, conv.skip_pattern, tuple(conv.stride))
            if key not in self._gathered:  # convs that read the same map's lattices share them
                self._gathered[key] = new.call_function(L.gather_lattices, (full[arg], ) + key[1:])
            return new.call_function(L.conv_kept, (self._gathered[key], module_of(node)))
        if name == 'conv_subsampled':
            return new.call_function(L.conv_subsampled, (lattice[arg], rule.args[0], module_of(node)))
        if name == 'clamp':
            return new.call_function(L.lattice_clamp, (lattice[arg], ) + tuple(rule.args[0]))
        if name == 'identity':
            return lattice[arg]
        if name == 'add':
            return new.call_function(L.lattice_add, (lattice[node.args[0]], lattice[node.args[1]]))
        raise AssertionError(name)

    def _release_after_last_reader(self, graph: fx.Graph) -> None:
        """Materialised maps that only readers which make new tensors of them read (convolutions, pooling,
        upsampling, later writes) are written into reused storage and released after their last reader; a map
        that anything else may hold on to (an output, a view) is left to Python's memory management."""
        modules = self.modules
        readers = {L.conv_lattices, L.pool_lattices, L.gather_lattices, L.materialise, L.pad_map, L.track,
                   F.interpolate, F.max_pool2d}
        order = {node: i for i, node in enumerate(graph.nodes)}

        def reads_only(user):
            if user.op == 'call_function':
                return user.target in readers
            if user.op == 'call_module':
                return isinstance(modules.get(user.target), (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))
            return False

        for node in list(graph.nodes):
            if node.op != 'call_function' or node.target not in (L.materialise, L.pad_map):
                continue
            users = []
            for user in node.users:
                if user.op == 'call_function' and user.target is L.full_map:
                    users += list(user.users)
                else:
                    users.append(user)
            if not users or not all(reads_only(u) for u in users):
                continue
            node.kwargs = dict(node.kwargs, reuse=True)
            with graph.inserting_after(max(users, key=lambda u: order[u])):
                graph.call_function(L.release, (node, ))

    def _window(self, user: fx.Node) -> Optional[Tuple[tuple, tuple, float]]:
        """(padding, stride, padding value) of a reader that reads a padded map, else None."""
        rule = self.rule.get(user)
        if rule is None:
            return None
        if rule.name == 'conv_lattices':
            conv = self.modules[user.target]
            return tuple(conv.padding), tuple(conv.stride), 0.0
        if rule.name == 'pool_lattices':  # max pooling pads with -inf
            return rule.args[2], rule.args[1], -_INF
        return None

    def _padded_source(self, new: fx.Graph, node: fx.Node, padded, full) -> fx.Node:
        """The padded map ``node`` reads: its input's materialised one, or a padded copy of its input."""
        pad, stride, value = self._window(node)
        source = padded.get(node.args[0])
        if source is None or (tuple(source.args[3]), source.args[4]) != (pad, value):
            source = new.call_function(L.pad_map, (full[node.args[0]], pad, value, stride))
        return source


_CONVS = (L.conv_kept, L.conv_lattices, L.conv_subsampled)


def _fusable_conv(node, order) -> bool:
    """A SkipConv call whose result only this epilogue reads (so its pre-activation values are needed nowhere)."""
    return (isinstance(node, fx.Node) and node.op == 'call_function' and node.target in _CONVS
            and len(node.users) == 1 and not node.kwargs and (node.target is not L.conv_subsampled
                                                              or len(node.args) == 3))


def _fuse_epilogues(graph: fx.Graph) -> None:
    """Fold ``clamp(conv)``, ``conv + other`` and ``clamp(conv + other)`` on kept lattices into the convolution
    (its ``activation`` and ``residual``): oneDNN applies them as it writes the output."""
    order = {node: i for i, node in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.op != 'call_function' or node.target not in (L.lattice_clamp, L.lattice_add):
            continue
        if node.target is L.lattice_add:
            if len(node.users) == 1 and next(iter(node.users)).target is L.lattice_clamp:
                continue  # fused with its activation below
            add, activation = node, None
        else:
            add, activation = node.args[0], tuple(node.args[1:3])
            if _fusable_conv(add, order):
                add.kwargs = {'activation': activation}
                node.replace_all_uses_with(add)
                graph.erase_node(node)
                continue
            if not (isinstance(add, fx.Node) and add.target is L.lattice_add and len(add.users) == 1):
                continue
        # The later operand is the conv: the other is then computed before it.
        a, b = sorted(add.args[:2], key=lambda n: order[n])
        if not _fusable_conv(b, order):
            continue
        b.kwargs = {'activation': activation, 'residual': a}
        node.replace_all_uses_with(b)
        graph.erase_node(node)
        if add is not node:
            graph.erase_node(add)
