"""Settings of the shared test server that the tests check their answers against."""

# Budget rules of the shared test server: each class gets a budget of its own,
# so a mixed batch shows every item keeps its budget.
TEST_RULES = [
    {"name": "code", "keywords": ["代码"], "max_tokens": 24, "max_sentences": 0},
    {"name": "long", "keywords": ["详细"], "max_tokens": 40},
]
DEFAULT_BUDGET = 12
API_KEYS = ("test-key-one", "test-key-two")
