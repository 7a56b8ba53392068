"""casa_worker: the model worker of casa-live's worker engine (docs/worker-protocol.md).

One process loads one model once (a project bundle rebuilt in PyTorch, or a released CASA
checkpoint through its Hugging Face remote code) and serves many caption sessions over a
Unix socket that casa-live creates. Run as `python -m tools.casa_worker --socket PATH --model REF`.
"""

import os as _os

# As tools/casa_model: keep OpenBLAS from spinning threads beside torch's own (set before torch loads).
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
