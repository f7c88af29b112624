"""Evaluation harness: scripted query sets run through the chat's pipeline, scored, reported.

    python -m eval --queries eval/queries/corpus.jsonl --compare --report eval/reports/corpus.md

`queries` loads and validates JSONL query sets, `metrics` holds the pure scoring functions,
`runner` asks the questions and aggregates, `report` writes the table, Markdown and plots,
`squad` turns SQuAD v1.1 dev into a corpus and query set (`python -m eval.squad`).
"""

from eval.queries import Query, QueryFormatError, load_queries

__all__ = ["Query", "QueryFormatError", "load_queries"]
