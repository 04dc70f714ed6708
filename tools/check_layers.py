#!/usr/bin/env python
# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Check the package's import graph: layers import downward only, no circles, no private names across modules.

The layers, lowest first (a layer imports only its own and lower ones; analysis and datasets share a level):
ops → models → engine, inference → analysis, datasets → apis → cli. The package root
(``skipconv_det/__init__.py``) re-exports from the layers, so nothing inside the package may import it. Outside
``skipconv_det/ops`` (whose private modules are its implementation) no module imports a private name (``_x``) or a
private module of another module. Every ``import`` statement counts, those inside functions too. Reads the source
with :mod:`ast`; imports nothing.

    python tools/check_layers.py [--root skipconv_det]

Prints each violation and exits with status 1 if there is one.
"""
import argparse
import ast
import os
import sys
from typing import Dict, Iterator, List, Set, Tuple

PACKAGE = 'skipconv_det'
# The rank of each subpackage (and top-level module) of the package: a module may import ranks <= its own.
LAYERS = {
    'version': 0,
    'ops': 0,
    'models': 1,
    'engine': 2,
    'inference': 2,
    'analysis': 3,
    'datasets': 3,
    'apis': 4,
    'cli': 5,
}
# Whose private modules and names are shared among its own modules.
PRIVATE_WITHIN = 'ops'


def package_modules(root: str) -> Dict[str, str]:
    """``{dotted module name: file path}`` of every module under ``root`` (the package directory)."""
    modules = {}
    parent = os.path.dirname(os.path.abspath(root))
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            if filename.endswith('.py'):
                path = os.path.join(dirpath, filename)
                parts = os.path.relpath(path, parent)[:-len('.py')].split(os.sep)
                if parts[-1] == '__init__':
                    parts = parts[:-1]
                modules['.'.join(parts)] = path
    return modules


def imports_of(module: str, path: str, modules: Dict[str, str]) -> Iterator[Tuple[str, Tuple[str, ...], int]]:
    """``(imported module, names taken from it, line)`` for each import of a module of the package in ``path``.
    ``from pkg import sub`` counts as an import of the submodule ``pkg.sub`` where one exists."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith('__init__.py')
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == PACKAGE:
                    yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.')
                base = base if is_package else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            if target.split('.')[0] != PACKAGE:
                continue
            names = tuple(alias.name for alias in node.names)
            submodules = [name for name in names if f'{target}.{name}' in modules]
            for name in submodules:
                yield f'{target}.{name}', (), node.lineno
            rest = tuple(name for name in names if name not in submodules)
            if rest or not submodules:
                yield target, rest, node.lineno


def layer_of(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to; '' for the package root."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def is_private(name: str) -> bool:
    return name.startswith('_') and not (name.startswith('__') and name.endswith('__'))


def strongly_connected(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The circles of ``graph``: its strongly connected components of more than one node (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def check(root: str) -> List[str]:
    """Every violation in the package at ``root``, as a readable line."""
    modules = package_modules(root)
    problems = []
    module_graph: Dict[str, Set[str]] = {name: set() for name in modules}
    layer_graph: Dict[str, Set[str]] = {}
    for module, path in sorted(modules.items()):
        where = os.path.relpath(path)
        importer_layer = layer_of(module)
        if importer_layer and importer_layer not in LAYERS:
            problems.append(f'{where}: {importer_layer!r} has no layer; add it to LAYERS in {__file__}')
            continue
        for target, names, line in imports_of(module, path, modules):
            if target not in modules:
                problems.append(f'{where}:{line}: imports {target}, which is not a module of the package')
                continue
            module_graph[module].add(target)
            target_layer = layer_of(target)
            if not target_layer:
                problems.append(f'{where}:{line}: imports the package root {target}, which imports every layer')
                continue
            if importer_layer and target_layer != importer_layer:
                layer_graph.setdefault(importer_layer, set()).add(target_layer)
                if LAYERS.get(target_layer, 0) > LAYERS[importer_layer]:
                    problems.append(f'{where}:{line}: {importer_layer} imports the higher layer {target}')
            if importer_layer == PRIVATE_WITHIN and target_layer == PRIVATE_WITHIN:
                continue
            private_parts = [p for p in target.split('.') if is_private(p)]
            private_names = [n for n in names if is_private(n)]
            if private_parts or private_names:
                what = ', '.join(private_names) + (' from ' if private_names else '') + target
                problems.append(f'{where}:{line}: imports the private {what}')
    for circle in strongly_connected(layer_graph):
        problems.append(f'layers import each other: {" ↔ ".join(circle)}')
    for circle in strongly_connected(module_graph):
        problems.append(f'modules import each other: {" ↔ ".join(circle)}')
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', PACKAGE),
                        help='the package directory (default: the skipconv_det next to tools/)')
    args = parser.parse_args()
    problems = check(args.root)
    for problem in problems:
        print(problem)
    count = len(package_modules(args.root))
    print(f'{count} modules: ' + (f'{len(problems)} problem(s)' if problems else
                                   'layers import downward only, no circles, no private names across modules'))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
