"""casa_model: the tool that builds casa-live's embedded CASA model.

World (procedural video with known captions) → tokenizer → training (CASA and its
insertion twin) → ONNX export → evaluation → demo clips. See README.md beside this file.
"""

import os as _os

# Debian's torch does its matrix products in OpenBLAS, whose worker threads spin beside
# torch's own intra-op threads and oversubscribe a 2-core machine (measured: evaluation
# 2.0 → 0.6 min, an insertion step with 2 threads 2.0 → 1.4 s). Set before torch loads.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
