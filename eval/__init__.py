"""Local evaluator for the /predict contract: accuracy (RougeL over jieba tokens) and throughput.

``python -m eval`` evaluates a running server, ``python -m eval score`` scores saved
predictions offline, ``python -m eval.tune`` sweeps length-control settings.
"""
