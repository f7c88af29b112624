"""Retrieval and answers on top of index/: retrieve, answer, cite, chat.

python -m rag ask "What did Hegseth threaten?"
"""

from rag.config import ABSTAIN_SENTENCE, Config
from rag.pipeline import Answer, Citation, Final, Pipeline, StreamEvent, Token

__all__ = [
    "ABSTAIN_SENTENCE",
    "Answer",
    "Citation",
    "Config",
    "Final",
    "Pipeline",
    "StreamEvent",
    "Token",
]
