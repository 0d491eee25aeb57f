"""The build-time model tools: downloading (with a LoRA adapter merged in), quantizing with
llmcompressor, uploading to ModelScope (``python -m prep download|quantize|upload``), and
what the server shares with them (the manifest, adapters, the data file, the chat rendering).

Nothing here imports ``qaserve`` (the server imports ``prep``, never the other way), and
every module imports with only pydantic: the heavy libraries (modelscope, peft,
transformers, llmcompressor) are imported inside the functions that use them."""
