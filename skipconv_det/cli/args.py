# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Command-line arguments shared by the tools: how a dense model is turned into SkipConv, and mmdet's config and
launcher arguments."""
import argparse
from typing import List, Optional

from mmengine.config import DictAction

from ..ops import DEFAULT_FILL, FILLS, SKIP_PATTERNS

_CONVERSION_DEFAULTS = dict(skip_pattern='checkerboard', shift_channels=False, skip_scope=None, fill=DEFAULT_FILL)


def add_conversion_args(parser: argparse.ArgumentParser, add_fill_arg: bool = True) -> None:
    """``--skip-pattern``, ``--shift-channels``, ``--skip-scope`` and (if ``add_fill_arg``) ``--fill``: how the convs
    of a dense model are converted (see :func:`~skipconv_det.models.convert_skipconv`). Tools whose results do not
    depend on the fill (FLOPs) leave ``--fill`` out."""
    parser.add_argument('--skip-pattern', choices=SKIP_PATTERNS, default=_CONVERSION_DEFAULTS['skip_pattern'],
                        help='pattern of computed output positions (default: checkerboard)')
    parser.add_argument('--shift-channels', action='store_true',
                        help='shift the pattern per output-channel group (recommended with grid)')
    parser.add_argument('--skip-scope', nargs='+', metavar='NAME',
                        help='top-level model components to convert, e.g. backbone neck rpn_head (default: all)')
    if add_fill_arg:
        parser.add_argument('--fill', choices=FILLS, default=_CONVERSION_DEFAULTS['fill'],
                            help=f'what skipped output positions hold (default: {DEFAULT_FILL})')


def add_skipconv_args(parser: argparse.ArgumentParser) -> None:
    """``--skipconv`` and the conversion arguments it takes (:func:`add_conversion_args`), as one group; check them
    with :func:`parse_skipconv_args`."""
    group = parser.add_argument_group('SkipConv', 'turn the config\'s model into a SkipConv one')
    group.add_argument('--skipconv', action='store_true',
                       help='convert the model\'s nn.Conv2d layers to SkipConv2d (prediction layers stay dense)')
    add_conversion_args(group)


def parse_skipconv_args(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` for a parser with :func:`add_skipconv_args`; exits with a usage message when
    conversion arguments are given without ``--skipconv``."""
    args = parser.parse_args(argv)
    if not args.skipconv and any(getattr(args, key) != value for key, value in _CONVERSION_DEFAULTS.items()):
        parser.error('--skip-pattern, --shift-channels, --skip-scope and --fill only apply with --skipconv; add it.')
    return args


def conversion_kwargs(args: argparse.Namespace) -> dict:
    """The parsed conversion arguments as keyword arguments of :func:`~skipconv_det.models.skipconv_model_cfg`."""
    kwargs = dict(skip_pattern=args.skip_pattern, shift_channels=args.shift_channels, scope=args.skip_scope)
    if hasattr(args, 'fill'):
        kwargs['fill'] = args.fill
    return kwargs


def add_cfg_options_arg(parser: argparse.ArgumentParser, help_text: Optional[str] = None) -> None:
    """mmdet's ``--cfg-options KEY=VALUE ...``, merged into the config."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=help_text or 'override some settings in the used config, the key-value pair in xxx=yyy format will be '
        'merged into config file. If the value to be overwritten is a list, it should be like key="[a,b]" or '
        'key=a,b It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" Note that the quotation '
        'marks are necessary and that no white space is allowed.')


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """mmdet's ``--launcher`` and ``--local-rank``."""
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # When using PyTorch version >= 2.0.0, the `torch.distributed.launch` will pass the `--local-rank`
    # parameter to `tools/train.py` instead of `--local_rank`.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
