#!/usr/bin/python3
"""Generates ONNX's node test cases (model.onnx + test_data_set_0/*.pb) into OUT_DIR.

Debian's python3-onnx ships the generator (onnx.backend.test.cmd_tools) but
not the data; its code still uses numpy aliases (np.float, np.int, ...) that
numpy 1.24 removed, so they are put back for the generator's sake only.
Test fixtures only; never used at run time.

Usage: gen_node_tests.py OUT_DIR
"""
import sys
import warnings

import numpy as np

warnings.simplefilter('ignore')
for alias, typ in (('float', float), ('int', int), ('bool', bool), ('object', object),
                   ('complex', complex), ('str', str)):
    if alias not in np.__dict__:
        setattr(np, alias, typ)

from onnx.backend.test import cmd_tools  # noqa: E402

sys.argv = [sys.argv[0], 'generate-data', '-o', sys.argv[1]]
cmd_tools.main()
