import pytest

from aggregator.clustering import tfidf


def test_tokenize_drops_stopwords_digits_and_case() -> None:
    assert tfidf.tokenize("The Kremlin said 27 points were UNACCEPTABLE to Putin's aides") == [
        "kremlin",
        "points",
        "unacceptable",
        "putin's",
        "aides",
    ]


def test_title_terms_weigh_more() -> None:
    counts = tfidf.article_terms("Kremlin rejects plan", "The plan was discussed.")
    assert counts["kremlin"] == tfidf.TITLE_WEIGHT
    assert counts["plan"] == 1 + tfidf.TITLE_WEIGHT


def test_vectors_are_unit_length_and_rare_terms_weigh_more() -> None:
    vector = tfidf.tfidf_vector({"common": 1, "rare": 1}, {"common": 100, "rare": 1}, 100)
    assert sum(w * w for w in vector.values()) == pytest.approx(1.0, abs=1e-5)
    assert vector["rare"] > vector["common"]


def test_best_match_respects_the_threshold() -> None:
    story = tfidf.StoryVector(7, {"kremlin": 0.8, "plan": 0.6}, 3)
    assert tfidf.best_match({"kremlin": 1.0}, [story], threshold=0.5) == tfidf.Match(7, 0.8)
    assert tfidf.best_match({"kremlin": 1.0}, [story], threshold=0.9).story_id is None
    assert tfidf.best_match({"kremlin": 1.0}, [], threshold=0.1) == tfidf.Match(None, 0.0)


def test_centroid_moves_towards_the_new_article_and_stays_normalised() -> None:
    centroid = tfidf.updated_centroid({"a": 1.0}, 1, {"b": 1.0})
    assert centroid["a"] == pytest.approx(centroid["b"])
    assert sum(w * w for w in centroid.values()) == pytest.approx(1.0, abs=1e-5)
    heavier = tfidf.updated_centroid({"a": 1.0}, 3, {"b": 1.0})
    assert heavier["a"] > heavier["b"]
