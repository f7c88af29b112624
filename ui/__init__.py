"""The browser chat (Gradio) over rag.Pipeline.

python -m ui
"""
