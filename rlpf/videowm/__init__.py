"""The pixel world model: a frame tokenizer, a causal LM over frame codes, and RLPF through pose lifting."""
