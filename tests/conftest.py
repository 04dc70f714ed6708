import os
import sys

# Test modules share helpers by plain import (e.g. the reference check in test_skip_conv.py).
sys.path.insert(0, os.path.dirname(__file__))
