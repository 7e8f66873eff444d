#!/usr/bin/env python3
"""A 135M-class LLaMA (SmolLM-135M's shape: 30 layers, 9 heads, 3 KV heads, width 576, FFN 1536, vocab 49152,
tied head) with random weights, saved by transformers as an HF directory: the speed does not depend on the values.
    python3 bench/llama/make_model.py OUT_DIR"""
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(0)
cfg = LlamaConfig(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576,
                  intermediate_size=1536, vocab_size=49152, max_position_embeddings=2048, rms_norm_eps=1e-5,
                  rope_theta=10000.0, tie_word_embeddings=True)
LlamaForCausalLM(cfg).float().save_pretrained(sys.argv[1], safe_serialization=True)
