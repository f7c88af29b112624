"""A tiny llama-architecture GGUF with random weights, for tests that need a real llama.cpp model.

    python -m tests.tiny_gguf /tmp/tiny.gguf [--babble]

The model has 2 layers, n_embd 64, 4 heads, n_ff 128 and a 2048-token context; its vocabulary is a
byte-level BPE ("gpt2" tokenizer model): the 256 byte tokens, a handful of merges, and the ChatML
control tokens ``<|im_start|>``, ``<|im_end|>`` and ``<|endoftext|>``. BOS and padding are
``<|endoftext|>``, EOS is ``<|im_end|>``, and the standard ChatML Jinja template is stored in
``tokenizer.chat_template`` (byte-identical to llama-cpp-python's ``CHATML_CHAT_TEMPLATE``, so
``Llama`` picks ``chat_format="chatml"``). The file is about 0.5 MB, is byte-for-byte reproducible
for a given seed, and loads in milliseconds.

All weights are small seeded noise, but by default (``scripted=True``) a reply is planted on top:
each token's embedding carries one large feature saying which token it is, and the output matrix
maps that feature to the next token of ``SCRIPTED_REPLY``. After any ChatML prompt, greedy (or
low-temperature) decoding therefore yields exactly ``"hello world"`` (7 tokens) and then EOS, so
``finish_reason`` is ``"stop"`` (or ``"length"`` when ``max_tokens`` is under 7). Only the last
prompt token matters, so a raw prompt ending in a script token starts mid-script (``"hello"`` is
continued with ``" world"``); ChatML prompts always end in a newline, which is not one. With
``scripted=False`` the model babbles instead: noisy printable ASCII (plus newlines) that never
emits EOS or a control token, so it always runs to ``max_tokens`` (``finish_reason="length"``).

Gotchas learned the hard way (llama-cpp-python only says "Failed to load model"; pass
``verbose=True`` to see why): the merges list must not be empty (an empty list is dropped from the
metadata and the BPE vocabulary then refuses to load), ``tokenizer.ggml.pre`` must be a name
llama.cpp knows (``default`` or ``gpt-2``, not ``gpt2``), the byte tokens must be typed NORMAL, and
``llama.attention.layer_norm_rms_epsilon`` must be present. And unshaped noise is a trap: it emits
UTF-8 lead bytes, and llama-cpp-python 0.3.36 skips its ``max_tokens`` check while it waits for a
multi-byte character to complete, so it can generate until the context is full and then raise
``RuntimeError: llama_decode returned 1`` -- hence the planted reply and the printable babble.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np

N_LAYER = 2
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX = 2048
RMS_EPS = 1e-5
ROPE_THETA = 10000.0

# Real newlines inside the Jinja string literals, as in Hugging Face tokenizer configs.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Pairs of existing tokens, in rank order; each merge result becomes a vocabulary token.
_MERGES = [
    ("h", "e"),
    ("l", "l"),
    ("i", "n"),
    ("t", "h"),
    ("e", "r"),
    ("a", "n"),
    ("o", "n"),
    ("Ġ", "t"),
    ("Ġ", "a"),
    ("he", "ll"),
    ("hell", "o"),
    ("Ġt", "he"),
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Tokens the scripted model emits before EOS; each occurs once, so the chain never loops.
_SCRIPT = ["hello", "Ġ", "w", "o", "r", "l", "d"]
SCRIPTED_REPLY = "hello world"


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-to-unicode table: printable bytes map to themselves, the rest to U+0100+."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


def build_vocab() -> tuple[list[str], list[int], list[str]]:
    """Tokens, their GGUF token types, and the BPE merges of the tiny vocabulary."""
    tokens = list(bytes_to_unicode().values())
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    merges = []
    for left, right in _MERGES:
        merges.append(f"{left} {right}")
        tokens.append(left + right)
        types.append(int(gguf.TokenType.NORMAL))
    for special in SPECIAL_TOKENS:
        tokens.append(special)
        types.append(int(gguf.TokenType.CONTROL))
    return tokens, types, merges


def _plant_script(tokens: list[str], token_embd: np.ndarray, output: np.ndarray) -> None:
    """Make the last token decide the next one: any token -> "hello" -> ... -> "d" -> EOS."""
    # Feature 0 marks "any token not in the script"; feature k marks _SCRIPT[k - 1]. The layers'
    # weights are tiny, so the residual stream stays dominated by the current token's embedding;
    # after RMS norm that feature is about sqrt(N_EMBD) = 8, and 4 * 8 = 32 is the winning logit.
    ids = [tokens.index(t) for t in _SCRIPT]
    feature = np.zeros(len(tokens), dtype=np.int64)
    feature[ids] = np.arange(1, len(ids) + 1)
    token_embd[np.arange(len(tokens)), feature] += 1.0
    successors = [*ids, tokens.index("<|im_end|>")]
    for k, successor in enumerate(successors):
        output[successor, k] += 4.0


def _plant_babble(tokens: list[str], token_embd: np.ndarray, output: np.ndarray) -> None:
    """Keep the noise printable: control bytes, non-ASCII bytes and special tokens never win."""
    # Every token carries feature 0 (about 8 after RMS norm); -4 on it puts the banned tokens'
    # logits near -32 while the rest stay near 0, so decoding babbles printable ASCII.
    # Byte token b has id b (build_vocab lists them in byte order).
    banned = [b for b in range(256) if not (0x20 <= b < 0x7F or b == 0x0A)]
    banned += [tokens.index(t) for t in SPECIAL_TOKENS]
    token_embd[:, 0] += 1.0
    output[banned, 0] -= 4.0


def build_tiny_gguf(path: Path, *, seed: int = 0, scripted: bool = True) -> Path:
    """Write a tiny llama-architecture GGUF (random weights) that llama-cpp-python loads."""
    # scripted=True plants SCRIPTED_REPLY, False printable babble (see the module docstring).
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, types, merges = build_vocab()
    n_vocab = len(tokens)
    endoftext = tokens.index("<|endoftext|>")
    im_end = tokens.index("<|im_end|>")
    head_dim = N_EMBD // N_HEAD
    n_embd_kv = head_dim * N_HEAD_KV

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(endoftext)
    writer.add_eos_token_id(im_end)
    writer.add_pad_token_id(endoftext)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        # numpy shape is (out, in); gguf reverses it into llama.cpp's (ne0=in, ne1=out).
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(N_EMBD, dtype=np.float32)

    token_embd = weight(n_vocab, N_EMBD)
    output = weight(n_vocab, N_EMBD)
    (_plant_script if scripted else _plant_babble)(tokens, token_embd, output)

    writer.add_tensor("token_embd.weight", token_embd)
    for i in range(N_LAYER):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", norm())
        writer.add_tensor(f"{blk}.attn_q.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{blk}.attn_k.weight", weight(n_embd_kv, N_EMBD))
        writer.add_tensor(f"{blk}.attn_v.weight", weight(n_embd_kv, N_EMBD))
        writer.add_tensor(f"{blk}.attn_output.weight", weight(N_EMBD, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_norm.weight", norm())
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", norm())
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")
    written = build_tiny_gguf(target, scripted="--babble" not in sys.argv[2:])
    sys.stdout.write(f"{written} ({written.stat().st_size} bytes)\n")
