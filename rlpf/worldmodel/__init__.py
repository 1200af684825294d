"""The built-in generator: motion features, the FSQ motion tokenizer, the causal LM over prompt
words and motion codes, its pretraining, and its metrics (the learned motion-text evaluator, FID).
It never imports rewards or policies.
"""
