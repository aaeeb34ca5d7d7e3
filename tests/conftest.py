import os
import sys

# Tests import their shared helpers as a plain module (tests/ is not a package).
sys.path.insert(0, os.path.dirname(__file__))
