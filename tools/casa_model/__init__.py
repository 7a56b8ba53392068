"""casa_model: the tool that builds casa-live's embedded CASA model.

World (procedural video with known captions) → tokenizer → training (CASA and its
insertion twin) → ONNX export → evaluation → demo clips. See README.md beside this file.
"""
