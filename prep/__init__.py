"""Model preparation: merging a LoRA adapter, quantizing with llmcompressor, uploading to
ModelScope (``python -m prep quantize|upload``; merging runs inside ``download_model.py``)."""
