"""The competition API: POST /predict (one question or a batch), /info, /system_prompt."""
