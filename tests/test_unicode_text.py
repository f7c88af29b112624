"""Text outside ASCII: the BM25 analyzer, sentence splitting, and answers in other scripts.

    .venv/bin/python -m pytest -q tests/test_unicode_text.py

Issue item 10: Unicode letters and digits are terms (accents folded the same way in documents
and questions), Chinese and Japanese are indexed by character bigrams, sentences end at the
stops of other scripts, and a question in another script than Latin whose words the documents
hardly share abstains instead of answering from a document in another language.
"""

from __future__ import annotations

import shutil
import unicodedata

import pytest

from index.analyzer import ANALYZER, Analyzer, analyzer
from index.cleaning import split_sentences
from rag import ABSTAIN_SENTENCE
from rag.config import NON_LATIN_WARNING
from rag.extractive import is_non_latin
from tests.conftest import CORPUS

DOCUMENTS = {
    "zh_cafe.txt": "北京老城咖啡馆\n\n这家咖啡馆位于北京市东城区的一条胡同里。咖啡馆每天早上七点开门，"
    "晚上十点关门。店主王丽说，最受欢迎的饮品是桂花拿铁。每杯售价三十二元。",
    "ja_library.txt": "市立図書館のお知らせ\n\n市立図書館は毎週月曜日が休館日です。貸出期間は二週間で、"
    "一度に十冊まで借りることができます。新しい館長は佐藤健一さんです。",
    "ar_market.txt": "سوق المدينة القديمة\n\nيفتح سوق المدينة القديمة في القاهرة كل يوم من الساعة "
    "التاسعة صباحا. يبيع التجار التوابل والأقمشة والنحاس. قال التاجر أحمد إن الزعفران هو أغلى "
    "التوابل في السوق.",
    "fr_boulangerie.txt": "La boulangerie du quartier\n\nLa boulangerie Dupré, près de l'église "
    "Saint-Étienne, ouvre à six heures. Le pâtissier Éric Lefèvre prépare chaque matin deux "
    "cents croissants. Sa spécialité est la tarte aux pêches.",
}


@pytest.fixture(scope="module")
def text_analyzer() -> Analyzer:
    """The index's lexical analyzer (what BM25, abstention and highlighting tokenize with)."""
    return analyzer()


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory, embedder):
    """A pipeline over the real (English) corpus plus Chinese, Japanese, Arabic, French files."""
    from index import IndexConfig, update_index
    from rag import Config, Pipeline

    base = tmp_path_factory.mktemp("multilingual")
    shutil.copytree(CORPUS, base / "corpus")
    for name, text in DOCUMENTS.items():
        (base / "corpus" / name).write_text(text, encoding="utf-8")
    config = Config(index=IndexConfig(corpus_dir=base / "corpus", index_dir=base / "index"))
    update_index(config.index, progress=False, embedder=embedder)
    return Pipeline(config, embedder=embedder)


# --- the analyzer --------------------------------------------------------------------------------


def test_analyzer_has_a_new_name():
    assert ANALYZER != "snowball-en+stopwords" and "unicode" in ANALYZER


def test_accents_are_folded_alike_in_every_form(text_analyzer):
    composed = text_analyzer.tokenize("café Montréal")
    assert composed == ["cafe", "montreal"]
    assert text_analyzer.tokenize(unicodedata.normalize("NFD", "café Montréal")) == composed
    assert text_analyzer.tokenize("CAFE MONTREAL") == composed
    assert text_analyzer.tokenize("Straße naïve") == ["strass", "naiv"]


def test_ascii_terms_are_unchanged(text_analyzer):
    assert text_analyzer.tokenize("Mexico's 29 cartel bosses were handed over") == [
        "mexico", "29", "cartel", "boss", "were", "hand", "over",
    ]  # fmt: skip
    assert text_analyzer.tokenize("Mexico’s bosses") == text_analyzer.tokenize("Mexico's bosses")


def test_chinese_and_japanese_give_character_bigrams(text_analyzer):
    terms = text_analyzer.tokenize("咖啡馆开门")
    assert {"咖啡", "啡馆", "开门", "咖", "门"} <= set(terms)
    assert {"図書", "書館", "休館"} <= set(text_analyzer.tokenize("図書館の休館日"))
    assert text_analyzer.tokenize("猫") == ["猫"]  # a one-character word is still a term
    assert text_analyzer.tokenize("iPhone手机") == ["iphon", "手机", "手", "机"]


def test_other_scripts_keep_their_words(text_analyzer):
    assert text_analyzer.tokenize("سوق القاهرة") == ["سوق", "القاهرة"]
    assert text_analyzer.tokenize("مَدِينَة") == text_analyzer.tokenize("مدينة")  # vowel points folded
    assert text_analyzer.tokenize("Привет мир") == ["привет", "мир"]
    assert text_analyzer.tokenize("नमस्ते दुनिया") == [
        "नमस्ते",
        "दुनिया",
    ]  # vowel signs kept inside words


# --- sentences -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("咖啡馆在北京。它七点开门！你知道吗？当然。", ["咖啡馆在北京。", "它七点开门！", "你知道吗？", "当然。"]),
        ("「こんにちは。」と彼は言った。東京は大きい。", ["「こんにちは。」と彼は言った。", "東京は大きい。"]),
        ("مرحبا. كيف حالك؟ أنا بخير.", ["مرحبا.", "كيف حالك؟", "أنا بخير."]),
        ("Привет. Как дела?", ["Привет.", "Как дела?"]),
        ("Il est là. ¿Dónde está? Ici.", ["Il est là.", "¿Dónde está?", "Ici."]),
        ("नमस्ते। आप कैसे हैं?", ["नमस्ते।", "आप कैसे हैं?"]),
    ],
)  # fmt: skip
def test_sentences_end_at_the_stops_of_other_scripts(text, sentences):
    assert [text[s:e] for s, e in split_sentences(text)] == sentences


def test_script_detection_needs_no_model():
    assert is_non_latin("这家咖啡馆几点开门？") and is_non_latin("ما هو أغلى التوابل؟")
    assert is_non_latin("図書館の休館日はいつですか？")
    assert not is_non_latin("À quelle heure ouvre la boulangerie ?")
    assert not is_non_latin("Who commands NORTHCOM? 北京")
    assert not is_non_latin("42 🙂")


# --- answers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "source", "expected"),
    [
        ("这家咖啡馆几点开门？", "zh_cafe.txt", "七点开门"),
        ("最受欢迎的饮品是什么？", "zh_cafe.txt", "桂花拿铁"),
        ("新しい館長は誰ですか？", "ja_library.txt", "佐藤健一"),
        ("図書館の休館日はいつですか？", "ja_library.txt", "月曜日"),
        ("ما هو أغلى التوابل في السوق؟", "ar_market.txt", "الزعفران"),
        ("A quelle heure ouvre la boulangerie Dupre ?", "fr_boulangerie.txt", "six heures"),
    ],
)
def test_questions_in_other_scripts_are_answered_from_their_documents(
    multilingual, question, source, expected
):
    answer = multilingual.ask(question)
    assert not answer.abstained, answer.warnings
    assert answer.hits[0].chunk.source == source
    assert answer.citations[0].source == source and expected in answer.answer


@pytest.mark.parametrize(
    "question", ["谁是美国总统？", "東京タワーの高さは？", "Кто президент Франции?"]
)
def test_non_latin_question_without_lexical_support_abstains(multilingual, question):
    answer = multilingual.ask(question)
    assert answer.abstained and answer.answer == ABSTAIN_SENTENCE
    assert NON_LATIN_WARNING in answer.warnings or not answer.citations


def test_english_questions_still_answer(multilingual):
    answer = multilingual.ask("How many cartel bosses did Mexico hand over to the United States?")
    assert "29" in answer.answer and not answer.warnings


def test_stray_marks_never_make_empty_terms(tmp_path):
    import numpy as np

    from tests.test_collections import FLAT, embedded_store

    texts = ["café 乗\u05c4 mark", "other text"]
    store, row_ids = embedded_store(
        tmp_path, texts, np.eye(2, 4, dtype=np.float32), dense=FLAT, parts=1
    )
    for text in ["\u0301", "乗\u05c4", "a\u0301 \u05c4", "\U000e0064\ude62ê"]:
        assert "" not in analyzer().tokenize(text)
    assert "" not in store.segments[0].postings.terms and "" not in store.stats.df
    # A query of stray marks and one real word finds the one chunk holding that word.
    found = store.search(text="\u05c4 \u0301 café", vector=None, k=5)
    assert found.lexical_ids.tolist() == [int(row_ids[0])]
